"""Settings of TLS on the node's doors (`tls:`) and of ingest authentication (`auth:`).

One certificate serves every TCP door that uses TLS (the OTLP doors, each with its per-worker
doors, the API and the peer door); a client CA turns on mutual TLS. Ingest tokens guard the OTLP
doors, and a token can name the customer its senders are. Files are named by path, relative to
the config file; `config check` looks for them and reads them (`security_files`).
"""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from refinery_py.config.loader import Reader
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.schema_fields import option
from refinery_py.config.yaml_tree import line_of

TLS_DOORS = ("otlp_grpc", "otlp_http", "api", "peer")
"""The TCP doors TLS can be turned on for (a per-worker OTLP door follows its protocol's)."""

AUTHORIZATION = "authorization"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN = re.compile(r"[\x21-\x7e]+")
"""Visible ASCII without spaces: what fits in a header value and in `Bearer TOKEN`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """TLS on the TCP doors: one certificate, re-read when its files change on disk."""

    cert_file: str | None = option(
        "cert_file",
        "PEM certificate chain (leaf first) the TLS doors present; null: no door uses TLS. "
        "Re-read when it changes on disk (checked every 5 s and on SIGHUP).",
        default=None,
    )
    key_file: str | None = option(
        "key_file", "PEM private key of cert_file, unencrypted; re-read with it.", default=None
    )
    client_ca_file: str | None = option(
        "client_ca_file",
        "PEM CA certificates for mutual TLS: the doors in client_cert_doors then accept only "
        "clients presenting a certificate one of them signed. null: no client certificates.",
        default=None,
    )
    doors: tuple[str, ...] = option(
        "doors",
        "The doors that use TLS once cert_file is set: otlp_grpc, otlp_http (each with its "
        "per-worker doors), api, peer. Unix sockets between a node's workers never do.",
        default=TLS_DOORS,
    )
    client_cert_doors: tuple[str, ...] | None = option(
        "client_cert_doors",
        "Which TLS doors require a client certificate when client_ca_file is set (leave the "
        "api out for probes that cannot present one); null: every door in doors.",
        default=None,
    )
    line: int = 0

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    def serves(self, door: str) -> bool:
        """Whether `door` (one of TLS_DOORS) listens with TLS."""
        return self.enabled and door in self.doors

    def wants_client_cert(self, door: str) -> bool:
        """Whether `door` requires a client certificate signed by `client_ca_file`."""
        if not self.serves(door) or self.client_ca_file is None:
            return False
        return door in (
            self.client_cert_doors if self.client_cert_doors is not None else self.doors
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSettings:
    """One ingest token, written in the config or read from a file, and whose it is."""

    token: str | None = option(
        "token",
        "The token itself; prefer token_file, which keeps secrets out of the config.",
        default=None,
    )
    token_file: str | None = option(
        "token_file",
        "A file holding the token (surrounding whitespace ignored), re-read when it changes.",
        default=None,
    )
    customer: str | None = option(
        "customer",
        "The customer sending with this token: its requests' resources that lack the first of "
        "customer_fields get it as a resource attribute (a span's own attribute still wins). "
        "null: requests are not tagged.",
        default=None,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """Ingest authentication: the tokens the OTLP doors (per-worker doors too) accept."""

    tokens: tuple[TokenSettings, ...] = option(
        "tokens",
        "Tokens a sender must present on the OTLP doors; empty: the doors are open. A missing "
        "or unknown token gets UNAUTHENTICATED / HTTP 401.",
        default=(),
    )
    header: str = option(
        "header",
        "Where senders put the token (gRPC metadata of the same name): authorization, as "
        "`Bearer TOKEN`, or another header (x-api-key, say) holding the token alone.",
        default=AUTHORIZATION,
    )
    line: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)


def check_key_pair(reader: Reader, view: MappingView) -> None:
    """`cert_file` and `key_file` come together (here and in the export's settings)."""
    cert, key = view.get("cert_file"), view.get("key_file")
    if (cert is None) != (key is None):
        given, missing = (
            ("cert_file", "key_file") if cert is not None else ("key_file", "cert_file")
        )
        reader.error(view.line(given), f"{view.path_of(given)} needs {missing} too")
        view.fail(given)


def check_tls(reader: Reader, view: MappingView) -> None:
    """A certificate needs its key; door lists name real doors; a client CA needs a cert."""
    check_key_pair(reader, view)
    cert = view.get("cert_file")
    doors = _check_doors(reader, view, "doors", TLS_DOORS)
    if doors is not None and not doors:
        reader.error(
            view.line("doors"),
            f"{view.path_of('doors')} is empty: leave cert_file out instead to turn TLS off",
        )
        view.fail("doors")
    if cert is None:
        for attr in ("client_ca_file", "doors", "client_cert_doors"):
            if view.given(attr) and view.get(attr) is not None:
                reader.error(view.line(attr), f"{view.path_of(attr)} needs tls.cert_file")
                view.fail(attr)
    served = doors if doors is not None else TLS_DOORS
    client_doors = _check_doors(reader, view, "client_cert_doors", served)
    if client_doors is not None and view.get("client_ca_file") is None and cert is not None:
        reader.error(
            view.line("client_cert_doors"),
            f"{view.path_of('client_cert_doors')} needs client_ca_file, the CA that signs the "
            "client certificates",
        )
        view.fail("client_cert_doors")


def _check_doors(
    reader: Reader, view: MappingView, attr: str, allowed: tuple[str, ...]
) -> tuple[str, ...] | None:
    value = view.get(attr)
    if not isinstance(value, tuple) or not view.ok(attr):
        return None
    for door in value:
        if door not in allowed:
            others = ", ".join(allowed)
            reader.error(
                view.value_line(attr),
                f"{view.path_of(attr)}: {door!r} is not one of {others}",
            )
            view.fail(attr)
            return None
    if len(set(value)) != len(value):
        reader.error(view.value_line(attr), f"{view.path_of(attr)} lists a door twice")
        view.fail(attr)
        return None
    return value


def check_token(reader: Reader, view: MappingView) -> None:
    """Exactly one of token and token_file; a token that fits in a header."""
    token, token_file = view.get("token"), view.get("token_file")
    if (token is None) == (token_file is None):
        reader.error(
            view.line("token") if token is not None else view.line_no,
            f"{view.path or 'a token'}: give exactly one of token and token_file",
        )
        view.fail("token")
    if isinstance(token, str) and not _TOKEN.fullmatch(token):
        reader.error(
            view.value_line("token"),
            f"{view.path_of('token')} must be visible ASCII characters without spaces",
        )
        view.fail("token")
    customer = view.get("customer")
    if isinstance(customer, str) and not customer.strip():
        reader.error(view.value_line("customer"), f"{view.path_of('customer')} is empty")
        view.fail("customer")


def check_auth(reader: Reader, view: MappingView) -> None:
    """A valid header name; no token listed twice."""
    header = view.get("header")
    if isinstance(header, str) and not _HEADER_NAME.fullmatch(header):
        reader.error(
            view.value_line("header"), f"{view.path_of('header')}: {header!r} is not a header name"
        )
        view.fail("header")
    elif isinstance(header, str):
        view.set("header", header.lower())
    tokens = view.get("tokens")
    if isinstance(tokens, tuple):
        seen: set[str] = set()
        for entry in tokens:
            if isinstance(entry, TokenSettings) and entry.token is not None:
                if entry.token in seen:
                    reader.error(entry.line, f"{view.path_of('tokens')} lists a token twice")
                    view.fail("tokens")
                seen.add(entry.token)


def key_line(root: yaml.Node | None, *path: str | int) -> int:
    """The line of the key (or list item) at `path` in the document, else of the nearest
    enclosing one that exists (0 for the whole file)."""
    node, line = root, 0
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, yaml.SequenceNode) or step >= len(node.value):
                return line
            node = node.value[step]
            line = line_of(node)
            continue
        if not isinstance(node, yaml.MappingNode):
            return line
        found = next(
            ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step),
            None,
        )
        if found is None:
            return line
        line, node = line_of(found[0]), found[1]
    return line
