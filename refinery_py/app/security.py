"""A process's TLS material and ingest tokens, built from the settings, kept current.

What each door and client needs is built on first use (a supervisor needs only its API's
certificate and its peer links, a worker everything else) and registered with one watcher that
re-reads changed files every few seconds and on SIGHUP. A certificate, key, CA or token file
that cannot be used at start-up stops the node with a message naming the key and the file
(`PemProblem` and `ValueError` are what `serve` reports as "cannot start").
"""

from __future__ import annotations

import functools
import ssl

import grpc

from refinery_py.cluster.link import LinkTls
from refinery_py.config.settings import Settings
from refinery_py.receive.ingest_auth import IngestAuth
from refinery_py.security.files import ReloadOutcome
from refinery_py.security.tls import ClientCertificate, ServerCertificate
from refinery_py.security.tokens import IngestTokens, TokenSource
from refinery_py.security.watch import CredentialWatcher
from refinery_py.telemetry.metrics import CredentialMetrics


class Security:
    """TLS for the doors named in `tls.doors`, peer links, the export, and ingest tokens.

    `metrics`, when given, counts reloads (a supervisor, whose metrics are its workers', logs
    them only).
    """

    def __init__(self, settings: Settings, metrics: CredentialMetrics | None = None) -> None:
        self.settings = settings
        self._metrics = metrics
        self.watcher = CredentialWatcher()

    def _counted(self, kind: str) -> ReloadOutcome | None:
        return None if self._metrics is None else self._metrics.outcome(kind)

    @functools.cached_property
    def certificate(self) -> ServerCertificate | None:
        """What the TLS doors present; None when `tls.cert_file` is not set."""
        tls, settings = self.settings.tls, self.settings
        if tls.cert_file is None or tls.key_file is None:
            return None
        certificate = ServerCertificate(
            settings.file_path(tls.cert_file),
            settings.file_path(tls.key_file),
            settings.file_path(tls.client_ca_file) if tls.client_ca_file else None,
            name="tls",
            on_reload=self._counted("server_tls"),
        )
        self.watcher.add(certificate)
        return certificate

    def server_context(self, door: str) -> ssl.SSLContext | None:
        """The SSL context of an aiohttp door (`otlp_http`, `api`, `peer`); None: plain."""
        certificate = self.certificate
        if certificate is None or not self.settings.tls.serves(door):
            return None
        return certificate.server_context(client_cert=self.settings.tls.wants_client_cert(door))

    def grpc_credentials(self, door: str) -> grpc.ServerCredentials | None:
        """The credentials of a gRPC door (`otlp_grpc`); None: plain."""
        certificate = self.certificate
        if certificate is None or not self.settings.tls.serves(door):
            return None
        return certificate.grpc_credentials(client_cert=self.settings.tls.wants_client_cert(door))

    @functools.cached_property
    def peer_links(self) -> LinkTls | None:
        """How this node reaches other members' peer doors: over TLS when its own peer door
        uses TLS (every member must agree), checking them against `cluster.tls_ca_file`, else
        `tls.client_ca_file`, else the system's CAs, and presenting this node's certificate."""
        settings = self.settings
        tls, cluster = settings.tls, settings.cluster
        if not cluster.enabled or not tls.serves("peer"):
            return None
        assert tls.cert_file is not None and tls.key_file is not None
        ca = cluster.tls_ca_file or tls.client_ca_file
        client = ClientCertificate(
            settings.file_path(ca) if ca else None,
            settings.file_path(tls.cert_file),
            settings.file_path(tls.key_file),
            name="cluster peer links",
            ca_key="cluster.tls_ca_file" if cluster.tls_ca_file else "tls.client_ca_file",
            pair_key="tls.cert_file and key_file",
            on_reload=self._counted("peer_tls"),
        )
        self.watcher.add(client)
        return LinkTls(client.context, cluster.tls_server_name)

    @functools.cached_property
    def export(self) -> ClientCertificate | None:
        """The export's CA and client certificate; None: the system's CAs, no certificate."""
        settings = self.settings
        otlp = settings.export.otlp
        if otlp is None or not otlp.use_tls or (otlp.ca_file is None and otlp.cert_file is None):
            return None
        client = ClientCertificate(
            settings.file_path(otlp.ca_file) if otlp.ca_file else None,
            settings.file_path(otlp.cert_file) if otlp.cert_file else None,
            settings.file_path(otlp.key_file) if otlp.key_file else None,
            name="export.otlp",
            on_reload=self._counted("export_tls"),
        )
        self.watcher.add(client)
        return client

    @functools.cached_property
    def ingest(self) -> IngestAuth | None:
        """The tokens the OTLP doors require; None when `auth.tokens` is empty."""
        settings = self.settings
        auth = settings.auth
        if not auth.enabled:
            return None
        table = IngestAuth(auth.header, {})
        sources = [
            TokenSource(
                token.token,
                settings.file_path(token.token_file) if token.token_file else None,
                token.customer or "",
                f"auth.tokens[{index}]",
            )
            for index, token in enumerate(auth.tokens)
        ]
        tokens = IngestTokens(sources, table.replace, on_reload=self._counted("tokens"))
        self.watcher.add(tokens)
        return table


def security_lines(settings: Settings) -> list[str]:
    """Start-up log lines: which doors use TLS, which want client certificates, tokens."""
    tls = settings.tls
    lines = []
    if tls.enabled:
        # The peer door only opens in a cluster.
        doors = [door for door in tls.doors if door != "peer" or settings.cluster.enabled]
        line = f"TLS on {', '.join(doors)} with {tls.cert_file}"
        wanting = [door for door in doors if tls.wants_client_cert(door)]
        if wanting:
            line += f"; client certificates required on {', '.join(wanting)}"
        lines.append(line)
    auth = settings.auth
    if auth.enabled:
        named = sum(1 for token in auth.tokens if token.customer)
        lines.append(
            f"the OTLP doors require one of {len(auth.tokens)} tokens (header {auth.header}; "
            f"{named} name a customer)"
        )
    return lines
