"""Network addresses: `host:port` listeners and OTLP export endpoints, read in one place.

The config loader uses these to validate what users write (and keeps the text); the exporter uses
them to connect. One reading means a value the config accepts is a value the exporter can use.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

TRACES_PATH = "/v1/traces"
"""The OTLP/HTTP path for traces, appended when an endpoint names no path of its own."""

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


def split_host_port(text: str) -> tuple[str, int]:
    """Split `host:port` into its host (IPv6 brackets removed) and port; ValueError says why not.

    Port 0 is allowed: for a listener it asks the OS for a free port.
    """
    spec = text.strip()
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port (the port is missing)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, like [::1]:4317")
    elif not host:
        raise ValueError(f"{text!r} has no host; use 0.0.0.0 to mean every interface")
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or IP address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An export endpoint, taken apart.

    `tls` is True for `https://`, False for `http://`, and None for a bare `host:port`, where the
    transport decides (gRPC from the `insecure` flag, HTTP always plain, as the OTLP exporter
    specification does). `path` is the URL's path (and query), empty for `host:port`.
    """

    host: str
    port: int
    tls: bool | None
    path: str

    @property
    def authority(self) -> str:
        """`host:port`, IPv6 hosts in brackets: the gRPC target and the URL's network location."""
        return join_host_port(self.host, self.port)

    def traces_url(self) -> str:
        """The OTLP/HTTP URL: the path as given, or `/v1/traces` when there is none."""
        scheme = "https" if self.tls else "http"
        path = self.path if self.path not in ("", "/") else TRACES_PATH
        return f"{scheme}://{self.authority}{path}"


def parse_endpoint(text: str) -> Endpoint:
    """Read `host:port` or an `http(s)://host[:port][/path]` URL; ValueError says what is wrong.

    A URL without a port gets its scheme's default port (80 or 443).
    """
    spec = text.strip()
    if "://" not in spec:
        host, port = split_host_port(spec)
        if port == 0:
            raise ValueError(f"{text!r}: an endpoint needs a real port, not 0")
        return Endpoint(host, port, None, "")
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: an endpoint URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{text!r}: the URL has no host")
    try:
        url_port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    tls = parts.scheme == "https"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.hostname, url_port or (443 if tls else 80), tls, path)
