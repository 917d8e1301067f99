"""Ingest tokens: which senders the OTLP doors accept, and which customer each token names.

A sender presents its token in one header (gRPC metadata of the same name): `authorization` as
`Bearer TOKEN`, the way OTLP exporters send it with `headers`, or another header (`x-api-key`,
say) holding the token alone. Tokens are looked up by their SHA-256 digest, so the lookup costs
the same whatever is guessed, and the table can be swapped whole when token files change.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

AUTHORIZATION = "authorization"
_BEARER = "bearer"


class TokenProblem(enum.Enum):
    """Why a request was not let in; the value is the `requests_rejected` reason label."""

    MISSING = "missing_token"
    INVALID = "invalid_token"


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent a request: the customer its token names ("" for none)."""

    customer: str = ""


ANONYMOUS = Sender()
"""A sender at a door without tokens, or with a token that names no customer."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class IngestAuth:
    """The tokens the OTLP doors accept: `header` says where senders put one; `tokens` maps
    each token to the customer it names ("" for none)."""

    def __init__(self, header: str, tokens: Mapping[str, str]) -> None:
        self.header = header.lower()
        self._table: dict[bytes, Sender] = {}
        self.replace(tokens)

    @property
    def bearer(self) -> bool:
        """Whether the token comes as `Authorization: Bearer TOKEN`."""
        return self.header == AUTHORIZATION

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401."""
        if self.bearer:
            return 'Bearer realm="refinery_py"'
        return f'ApiKey realm="refinery_py", header="{self.header}"'

    @property
    def how(self) -> str:
        """How to send the token, for messages."""
        if self.bearer:
            return "send it as 'Authorization: Bearer TOKEN'"
        return f"send it in the {self.header} header"

    def replace(self, tokens: Mapping[str, str]) -> None:
        """Accept exactly `tokens` from now on."""
        self._table = {
            _digest(token): Sender(customer) if customer else ANONYMOUS
            for token, customer in tokens.items()
        }

    def __len__(self) -> int:
        return len(self._table)

    def identify(self, value: str | None) -> Sender | tuple[TokenProblem, str]:
        """The sender of a request whose `header` held `value` (None when absent), or why it
        may not send, with a message for it."""
        if value is None or not value.strip():
            return TokenProblem.MISSING, f"this door requires a token: {self.how}"
        token = value.strip()
        if self.bearer:
            scheme, _, token = token.partition(" ")
            token = token.strip()
            if scheme.lower() != _BEARER or not token:
                return (
                    TokenProblem.INVALID,
                    "the authorization header must be 'Bearer TOKEN' (another scheme was sent)",
                )
        sender = self._table.get(_digest(token))
        if sender is None:
            return TokenProblem.INVALID, "the token is not accepted here"
        return sender
