"""Where kept traces go: the upstream OTLP exporter built from its settings, and the start-up
lines that say where kept traces, recordings and rules are."""

from __future__ import annotations

import logging
from pathlib import Path

from refinery_py.app.security import security_lines
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.export import OtlpExporter
from refinery_py.export.spill import Spill
from refinery_py.export.transport import ClientTls
from refinery_py.telemetry import Metrics

log = logging.getLogger("refinery_py")


def otlp_exporter(settings: Settings, metrics: Metrics, tls: ClientTls | None) -> OtlpExporter:
    otlp = settings.export.otlp
    assert otlp is not None
    return OtlpExporter(
        otlp.endpoint,
        metrics=metrics,
        protocol="http" if otlp.protocol == "http" else "grpc",
        headers=otlp.headers,
        compression="none" if otlp.compression == "none" else "gzip",
        timeout=otlp.timeout,
        insecure=not otlp.use_tls,
        batch_max_spans=otlp.batch_max_spans,
        batch_max_bytes=otlp.batch_max_bytes,
        batch_timeout=otlp.batch_timeout,
        queue_max_bytes=otlp.queue_max_bytes,
        concurrency=otlp.concurrency,
        retry_initial_interval=otlp.retry_initial_interval,
        retry_max_interval=otlp.retry_max_interval,
        retry_max_elapsed=otlp.retry_max_elapsed,
        spill=(
            Spill(Path(otlp.spill_dir), max_bytes=otlp.spill_max_size, exporter="otlp")
            if otlp.spill_dir
            else None
        ),
        tls=tls,
    )


def log_outputs(settings: Settings, rules: RulesSpec) -> None:
    """Say at start-up where kept traces go, what is recorded and which rules run."""
    if settings.export.otlp is not None:
        otlp = settings.export.otlp
        log.info("exporting kept traces over OTLP/%s to %s", otlp.protocol, otlp.endpoint)
    if settings.store.path is not None:
        log.info("storing kept traces in %s", settings.store.path)
    if settings.record.dir:
        log.info("recording accepted traffic to %s", settings.record.dir)
    for line in security_lines(settings):
        log.info("%s", line)
    log.info("rules: %s", rules.source or "(inline)")
    if settings.dry_run:
        log.info("dry run: every trace is kept and marked with the rules' decision")
