"""The rules a node runs, and changing them without a restart (file watch, SIGHUP, API).

A reload keeps buffered traces where they are (they are decided by the new rules when due) and
every sampler whose configuration did not change keeps what it has learned. An invalid file is
rejected whole: the running rules stay active, and the rejection is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from refinery_py.app.rules import build_engine
from refinery_py.config.problems import ConfigError
from refinery_py.config.rules import parse_rules
from refinery_py.config.rules_file import RulesFile
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.telemetry import Metrics

log = logging.getLogger("refinery_py")

RULES_POLL_INTERVAL = 1.0
"""Seconds between checks of the rules file for changes."""


class NodeRules:
    """The active rules and their engine; `on_engine` hears of every engine that takes over."""

    def __init__(
        self, spec: RulesSpec, metrics: Metrics, on_engine: Callable[[RulesEngine], None]
    ) -> None:
        self.on_applied: Callable[[RulesSpec], None] | None = None
        """Hears of rules this node took from its own file (a cluster shares them)."""
        self.shared_from = ""
        """The member whose rules run here, when they came from the cluster."""
        self.spec = spec
        self.engine = build_engine(spec, previous=None)
        self._metrics = metrics
        self._on_engine = on_engine
        self.loaded_at = time.time()
        source = Path(spec.source) if spec.source else None
        self.file = RulesFile(source) if source is not None and source.is_file() else None

    def status(self) -> dict[str, Any]:
        return {
            "source": self.spec.source,
            "digest": self.spec.digest,
            "loaded_at": _rfc3339(self.loaded_at),
            "watched": self.file is not None,
            "from_member": self.shared_from or None,
            "targets": {
                target: type(spec).__name__.removesuffix("Spec")
                for target, spec in self.spec.samplers.items()
            },
        }

    def reload(self, reason: str) -> dict[str, Any]:
        """Load the rules file again and switch to it if it changed and is valid."""
        if self.file is None:
            return {"outcome": "unavailable", "message": "no rules file is in use to reload"}
        try:
            spec = self.file.load()
            if spec.digest == self.spec.digest:
                self._metrics.rules_reloads.labels("unchanged").inc()
                return {"outcome": "unchanged", "digest": spec.digest}
            engine = build_engine(spec, previous=self.engine)
        except (ConfigError, UnsupportedSampler, ValueError) as exc:
            self._metrics.rules_reloads.labels("rejected").inc()
            problems = str(exc).splitlines()
            log.error(
                "rules reload (%s) rejected, keeping %s: %s",
                reason,
                self.spec.digest[:12],
                "; ".join(problems),
            )
            return {"outcome": "rejected", "digest": self.spec.digest, "errors": problems}
        self._switch(spec, engine)
        self.shared_from = ""
        log.info("rules reloaded (%s): %s, digest %s", reason, spec.source, spec.digest[:12])
        if self.on_applied is not None:
            self.on_applied(spec)
        return {"outcome": "applied", "digest": spec.digest}

    def apply_shared(self, text: str, digest: str, member: str) -> dict[str, Any]:
        """Switch to rules another cluster member applied (checked like a rules file)."""
        if digest == self.spec.digest:
            return {"outcome": "unchanged", "digest": digest}
        source = self.spec.source or "shared rules"
        try:
            spec = read_shared_rules(text, source, digest)
            engine = build_engine(spec, previous=self.engine)
        except (ConfigError, UnsupportedSampler, ValueError) as exc:
            self._metrics.rules_reloads.labels("rejected").inc()
            log.error("rules shared by %s rejected: %s", member, "; ".join(str(exc).splitlines()))
            return {"outcome": "rejected", "digest": self.spec.digest}
        self._switch(spec, engine)
        self.shared_from = member
        log.info("rules from cluster member %s applied: digest %s", member, digest[:12])
        return {"outcome": "applied", "digest": digest}

    def apply_shared_quietly(self, text: str, digest: str, member: str) -> None:
        """`apply_shared`, for callers that only need it logged and counted."""
        self.apply_shared(text, digest, member)

    def _switch(self, spec: RulesSpec, engine: RulesEngine) -> None:
        self.spec, self.engine = spec, engine
        self.loaded_at = time.time()
        self._on_engine(engine)
        self._metrics.rules_reloads.labels("applied").inc()

    async def watch(self, interval: float = RULES_POLL_INTERVAL) -> None:
        """Reload whenever the file changes on disk (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            if self.file is not None and self.file.changed():
                self.reload("file changed")


def read_shared_rules(text: str, source: str, digest: str) -> RulesSpec:
    """Rules text from another member as a spec, keeping the digest that member computed."""
    spec = parse_rules(text, source)
    return replace(spec, digest=digest)


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
