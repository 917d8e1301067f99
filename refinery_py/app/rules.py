"""Which rules a node runs, and building the engine for them."""

from __future__ import annotations

import logging
from pathlib import Path

from refinery_py.config.rules import load_rules
from refinery_py.config.rules_spec import DEFAULT_TARGET, RulesBasedSpec, RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.engine import RulesEngine

log = logging.getLogger("refinery_py")

KEEP_EVERYTHING = RulesSpec(
    rules_version=2,
    samplers={DEFAULT_TARGET: RulesBasedSpec(rules=())},
    source="(built-in: keep everything)",
)
"""The rules used when no rules file is configured or the default file is absent."""


def resolve_rules(settings: Settings, override: str | None) -> RulesSpec:
    """The rules to run: `--rules`, else the config's `rules_file`, else keep everything.

    A relative `rules_file` is read relative to the config file. The built-in default path may be
    absent (then everything is kept); a path the user named must exist.
    """
    if override is not None:
        return load_rules(override)
    if settings.rules_file is None:
        return KEEP_EVERYTHING
    path = Path(settings.rules_file)
    if not path.is_absolute() and settings.source:
        path = Path(settings.source).parent / path
    if not path.exists() and settings.rules_file == Settings().rules_file:
        log.info("no rules file at %s: keeping every trace", path)
        return KEEP_EVERYTHING
    return load_rules(path)


def build_engine(spec: RulesSpec, previous: RulesEngine | None) -> RulesEngine:
    """The rules engine for `spec`, reusing `previous`'s samplers where their config is equal."""
    return RulesEngine(spec, previous=previous)
