"""The ingest tokens of the config, written there or read from files, handed to the doors.

A token file is read again when it changes (every few seconds and on SIGHUP), so a token is
rotated by writing the new one into its file: the table is swapped whole once every file reads
well. A file that cannot be read, is empty or would give one token two customers leaves the
tokens in use in place, and says why in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from refinery_py.config.secret_files import read_token_file
from refinery_py.security.files import file_stamps
from refinery_py.security.tls import ReloadOutcome

log = logging.getLogger("refinery_py.security")


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
        self._on_reload = on_reload
        self._paths = tuple(s.file for s in self._sources if s.file is not None)
        self._stamps = file_stamps(self._paths)
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
        if not self._paths:
            return None
        stamps = file_stamps(self._paths)
        if stamps == self._stamps:
            return None
        self._stamps = stamps
        try:
            table = self._read()
        except ValueError as exc:
            log.error(
                "auth: the changed token files were not taken; the tokens in use stay: %s", exc
            )
            if self._on_reload is not None:
                self._on_reload(False)
            return False
        self._apply(table)
        log.info("auth: %d ingest tokens in use after a token file changed", len(table))
        if self._on_reload is not None:
            self._on_reload(True)
        return True
