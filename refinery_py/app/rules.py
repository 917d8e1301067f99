"""Which rules a node runs, and building the engine for them."""

from __future__ import annotations

import logging

from refinery_py.config.rules import load_rules
from refinery_py.config.rules_spec import DEFAULT_TARGET, RulesBasedSpec, RulesSpec
from refinery_py.config.settings import Settings, missing_default_rules_message
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
    path = settings.rules_path()
    if path is None:
        log.info("rules_file is null: keeping every trace")
        return KEEP_EVERYTHING
    if not path.exists() and settings.rules_file == Settings().rules_file:
        log.warning("%s", missing_default_rules_message(path))
        return KEEP_EVERYTHING
    return load_rules(path)


def build_engine(spec: RulesSpec, previous: RulesEngine | None) -> RulesEngine:
    """The rules engine for `spec`, reusing `previous`'s samplers where their config is equal."""
    return RulesEngine(spec, previous=previous)
