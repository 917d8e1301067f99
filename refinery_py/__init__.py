"""refinery_py: a tail-sampling pipeline for OpenTelemetry traces, driven by Refinery rules."""

from refinery_py import compiled as _compiled

__version__ = "0.1.0"

_compiled.install()  # before any per-span module is imported: see refinery_py/compiled.py
