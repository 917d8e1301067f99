"""Certificate authorities and certificates made for a test (trustme), written to PEM files.

`Authority(tmp_path, "ca")` writes `ca.crt`; `authority.issue("server", "127.0.0.1")` writes
`server.crt` (leaf first, then the chain) and `server.key` next to it, as a deployment would
mount them. Certificates carry both server and client authentication usages, so one can serve a
door and present itself to another (cluster peers do). `rotate_into` overwrites a pair in place
the way a certificate manager does: the files are replaced by rename, key and cert together.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files."""

    cert: Path
    key: Path

    def rotate_into(self, target: Pair) -> None:
        """Make `target`'s files hold this pair (each file replaced atomically)."""
        for source, destination in ((self.key, target.key), (self.cert, target.cert)):
            temporary = destination.with_name(destination.name + ".new")
            temporary.write_bytes(source.read_bytes())
            os.replace(temporary, destination)


class Authority:
    """A CA of its own for one test, its certificate in `<directory>/<name>.crt`."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        self.name = name
        self._ca = trustme.CA(organization_name=f"refinery_py test {name}")
        self.cert = directory / f"{name}.crt"
        self._ca.cert_pem.write_to_path(str(self.cert))

    def issue(
        self,
        name: str,
        *identities: str,
        expired: bool = False,
    ) -> Pair:
        """A certificate for `identities` (host names, IP addresses; default 127.0.0.1 and
        localhost), written to `<name>.crt` and `<name>.key`; `expired` ended yesterday."""
        not_before = not_after = None
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(1)
        leaf = self._ca.issue_cert(
            *(identities or ("127.0.0.1", "localhost")),
            common_name=name,
            not_before=not_before,
            not_after=not_after,
        )
        pair = Pair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        pair.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        pair.key.write_bytes(leaf.private_key_pem.bytes())
        return pair

    def client_context(self, pair: Pair | None = None) -> ssl.SSLContext:
        """A client context trusting this CA, presenting `pair` if given."""
        context = ssl.create_default_context(cafile=str(self.cert))
        if pair is not None:
            context.load_cert_chain(pair.cert, pair.key)
        return context

    def channel_credentials(self, pair: Pair | None = None) -> grpc.ChannelCredentials:
        """gRPC channel credentials trusting this CA, presenting `pair` if given."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.cert.read_bytes(),
            private_key=pair.key.read_bytes() if pair else None,
            certificate_chain=pair.cert.read_bytes() if pair else None,
        )


def served_certificate_name(context: ssl.SSLContext, port: int, host: str = "127.0.0.1") -> str:
    """The common name of the certificate a TLS server on `port` presents now."""
    import socket

    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    subject = dict(item for rdn in certificate["subject"] for item in rdn)
    return str(subject["commonName"])
