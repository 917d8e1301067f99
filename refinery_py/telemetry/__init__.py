"""Every metric refinery_py publishes, and logging set-up."""

from refinery_py.telemetry.metrics import Metrics

__all__ = ["Metrics"]
