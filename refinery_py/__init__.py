"""refinery_py: a tail-sampling pipeline for OpenTelemetry traces, driven by Refinery rules."""

__version__ = "0.1.0"
