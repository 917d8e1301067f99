"""Addresses as the config file holds them: validated text, read by `model.addresses`."""

from __future__ import annotations

from typing import NewType

from refinery_py.model.addresses import parse_endpoint, split_host_port

HostPort = NewType("HostPort", str)
"""`host:port` (IPv6 hosts in brackets: `[::1]:4317`), validated."""

EndpointText = NewType("EndpointText", str)
"""Where to export: `host:port`, or an `http://` / `https://` URL, validated."""


def parse_host_port(text: str) -> HostPort:
    """Validate a listen address; port 0 asks the OS for a free port (handy in tests)."""
    split_host_port(text)
    return HostPort(text.strip())


def parse_endpoint_text(text: str) -> EndpointText:
    """Validate an export endpoint: `host:port` or `http(s)://host[:port][/path]`."""
    parse_endpoint(text)
    return EndpointText(text.strip())


def endpoint_uses_tls(endpoint: str) -> bool | None:
    """True for https://, False for http://, None for a bare host:port (the config decides)."""
    return parse_endpoint(endpoint).tls
