"""Certificates for TLS doors and TLS clients, swapped in when their files change.

A server certificate is served three ways, all from one `ServerCertificate`:

- aiohttp doors get an `ssl.SSLContext` whose server-name callback, run at the start of every
  handshake (with or without SNI), points the connection at the context built from the files as
  they are now. A new certificate, key or client CA thus applies to the next handshake whole,
  and a CA removed from the client CA file stops being trusted (loading into the live context
  could only add CAs).
- gRPC doors get `grpc.dynamic_ssl_server_credentials`, whose fetcher gRPC core calls before
  every new connection's handshake: it hands over the new configuration once, then `None` (no
  change). This works with `grpc.aio` servers (checked with grpcio 1.85).
- Clients (peer links, the export) ask for the current `ssl.SSLContext` or gRPC channel
  credentials when they connect.

Connections already open keep the certificate they were made with. Files that fail to load
(half written, a key that does not match, a missing CA) leave the material in use in place, and
the failure is logged and counted; they are tried again when they change again.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc

from refinery_py.config.secret_files import load_ca, load_key_pair
from refinery_py.security.files import ReloadOutcome, WatchedFiles

log = logging.getLogger("refinery_py.security")


@dataclass(frozen=True, slots=True)
class _ServedMaterial:
    version: int
    plain: ssl.SSLContext
    mutual: ssl.SSLContext | None
    grpc_plain: grpc.ServerCertificateConfiguration
    grpc_mutual: grpc.ServerCertificateConfiguration | None


def _server_context() -> ssl.SSLContext:
    # Python's defaults for servers: TLS 1.2 at least, no compression, strong ciphers.
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


class ServerCertificate:
    """The certificate (and the CA of client certificates, for mutual TLS) of this process's
    TLS doors. Raises `PemProblem` when the files cannot be used at construction."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        *,
        name: str = "tls",
        on_reload: ReloadOutcome | None = None,
    ) -> None:
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self.name = name
        paths = (cert, key) if client_ca is None else (cert, key, client_ca)
        self._files = WatchedFiles(paths, name=name, on_reload=on_reload)
        self._material = self._load(1)

    def _load(self, version: int) -> _ServedMaterial:
        what = f"{self.name}.cert_file and key_file"
        plain = _server_context()
        cert_pem, key_pem = load_key_pair(plain, self._cert, self._key, what)
        pair = [(key_pem, cert_pem)]
        if self._client_ca is None:
            return _ServedMaterial(
                version, plain, None, grpc.ssl_server_certificate_configuration(pair), None
            )
        mutual = _server_context()
        load_key_pair(mutual, self._cert, self._key, what)
        ca_pem = load_ca(mutual, self._client_ca, f"{self.name}.client_ca_file")
        mutual.verify_mode = ssl.CERT_REQUIRED
        return _ServedMaterial(
            version,
            plain,
            mutual,
            grpc.ssl_server_certificate_configuration(pair),
            grpc.ssl_server_certificate_configuration(pair, root_certificates=ca_pem),
        )

    def refresh(self) -> bool | None:
        """Take the files again if they changed: True when new material is in use, False when
        the changed files were refused (the old material stays), None when nothing changed."""
        return self._files.reload(
            lambda: self._load(self._material.version + 1),
            self._use,
            kept="still serving the previous certificate",
        )

    def _use(self, material: _ServedMaterial) -> None:
        self._material = material

    def _current(self, client_cert: bool) -> ssl.SSLContext:
        material = self._material
        if client_cert:
            assert material.mutual is not None
            return material.mutual
        return material.plain

    def server_context(self, *, client_cert: bool) -> ssl.SSLContext:
        """A context for one aiohttp door; `client_cert` requires a certificate signed by the
        client CA (which must be configured)."""
        if client_cert and self._client_ca is None:
            raise ValueError("client certificates need a client CA file")
        # A context of its own, so the verify mode (copied into each connection when it is
        # made, before the callback runs) is this door's.
        front = _server_context()
        load_key_pair(front, self._cert, self._key, f"{self.name}.cert_file and key_file")
        if client_cert:
            assert self._client_ca is not None
            load_ca(front, self._client_ca, f"{self.name}.client_ca_file")
            front.verify_mode = ssl.CERT_REQUIRED

        def use_current(connection: ssl.SSLObject, _name: str | None, _: ssl.SSLContext) -> None:
            try:
                connection.context = self._current(client_cert)
            except Exception:  # never fail a handshake here: the front context still serves
                log.exception(
                    "%s: could not switch a connection to the current certificate", self.name
                )

        front.sni_callback = use_current
        return front

    def grpc_credentials(self, *, client_cert: bool) -> grpc.ServerCredentials:
        """Credentials for one gRPC door, switched to new material on the next connection."""
        if client_cert and self._client_ca is None:
            raise ValueError("client certificates need a client CA file")
        material = self._material
        delivered = [material.version]

        def configuration(current: _ServedMaterial) -> grpc.ServerCertificateConfiguration:
            chosen = current.grpc_mutual if client_cert else current.grpc_plain
            assert chosen is not None
            return chosen

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC core before every handshake, on one of its threads.
            current = self._material
            if current.version == delivered[0]:
                return None
            delivered[0] = current.version
            return configuration(current)

        # grpc-stubs types the fetcher without its documented None ("no change").
        fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", fetch)
        return grpc.dynamic_ssl_server_credentials(
            configuration(material), fetcher, require_client_authentication=client_cert
        )


@dataclass(frozen=True, slots=True)
class _ClientMaterial:
    context: ssl.SSLContext
    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None


class ClientCertificate:
    """What this process's TLS clients trust (a CA file, else the system's CAs) and, for mutual
    TLS, the certificate they present. Raises `PemProblem` when the files cannot be used.

    `name` says whose clients these are in the log (`export.otlp`); `ca_key` and `pair_key`
    name the files' config keys in messages (default: `<name>.ca_file`, `<name>.cert_file and
    key_file`).
    """

    def __init__(
        self,
        ca: Path | None,
        cert: Path | None = None,
        key: Path | None = None,
        *,
        name: str,
        ca_key: str = "",
        pair_key: str = "",
        on_reload: ReloadOutcome | None = None,
    ) -> None:
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its key")
        self._ca, self._cert, self._key = ca, cert, key
        self.name = name
        self._ca_key = ca_key or f"{name}.ca_file"
        self._pair_key = pair_key or f"{name}.cert_file and key_file"
        paths = [path for path in (ca, cert, key) if path is not None]
        self._files = WatchedFiles(paths, name=name, on_reload=on_reload)
        self._material = self._load()
        self._channel_credentials: grpc.ChannelCredentials | None = None

    def _load(self) -> _ClientMaterial:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its name
        ca_pem = cert_pem = key_pem = None
        if self._ca is not None:
            ca_pem = load_ca(context, self._ca, self._ca_key)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self._cert is not None and self._key is not None:
            cert_pem, key_pem = load_key_pair(context, self._cert, self._key, self._pair_key)
        return _ClientMaterial(context, ca_pem, cert_pem, key_pem)

    def refresh(self) -> bool | None:
        """Like `ServerCertificate.refresh`: True, False (refused, old kept) or None."""
        return self._files.reload(self._load, self._use, kept="still using the previous ones")

    def _use(self, material: _ClientMaterial) -> None:
        self._material = material
        self._channel_credentials = None

    def context(self) -> ssl.SSLContext:
        """The context for new connections (the same object until the files change)."""
        return self._material.context

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials for new channels (the same object until the files change)."""
        if self._channel_credentials is None:
            material = self._material
            self._channel_credentials = grpc.ssl_channel_credentials(
                root_certificates=material.ca_pem,
                private_key=material.key_pem,
                certificate_chain=material.cert_pem,
            )
        return self._channel_credentials
