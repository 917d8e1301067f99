"""The ingest tokens of the config, written there or read from files, handed to the doors.

A token file is read again when it changes (every few seconds and on SIGHUP), so a token is
rotated by writing the new one into its file: the table is swapped whole once every file reads
well. A file that cannot be read, is empty or would give one token two customers leaves the
tokens in use in place, and says why in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from refinery_py.config.secret_files import read_token_file
from refinery_py.security.files import ReloadOutcome, WatchedFiles


@dataclass(frozen=True, slots=True)
class TokenSource:
    """One configured token: its text, or the file that holds it; the customer it names."""

    token: str | None
    file: Path | None
    customer: str
    where: str
    """How the config names it (`auth.tokens[2]`), for messages."""


class IngestTokens:
    """Hands the configured tokens (token → customer, "" for none) to `apply` (an
    `IngestAuth.replace`), and again when a token file changes. Raises ValueError at
    construction when the tokens cannot be read."""

    def __init__(
        self,
        sources: Sequence[TokenSource],
        apply: Callable[[Mapping[str, str]], None],
        *,
        on_reload: ReloadOutcome | None = None,
    ) -> None:
        self._sources = tuple(sources)
        self._apply = apply
        paths = [source.file for source in self._sources if source.file is not None]
        self._files = WatchedFiles(paths, name="auth", on_reload=on_reload)
        apply(self._read())

    def _read(self) -> dict[str, str]:
        table: dict[str, str] = {}
        owner: dict[str, str] = {}
        for source in self._sources:
            if source.file is not None:
                try:
                    token = read_token_file(source.file)
                except ValueError as exc:
                    raise ValueError(f"{source.where}.token_file: {exc}") from None
            else:
                assert source.token is not None
                token = source.token
            if token in table and table[token] != source.customer:
                raise ValueError(
                    f"{source.where} holds the same token as {owner[token]}, for another customer"
                )
            table[token] = source.customer
            owner.setdefault(token, source.where)
        return table

    def refresh(self) -> bool | None:
        """Read the token files again if they changed: True when the new tokens are in use,
        False when they were refused (the old ones stay), None when nothing changed."""
        return self._files.reload(self._read, self._apply, kept="the tokens in use stay")
