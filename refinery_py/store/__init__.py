"""The embedded store: kept traces in a SQLite file, queryable per customer.

`StoreExporter` is the `TraceExporter` the pipeline offers kept traces to (a bounded queue and a
writer thread that commits batches; retention by age and size). `StoreReader` runs the queries
of `refinery_py.store.queries` off the event loop. See `schema` for the file's layout and why a
kill -9 never corrupts it.
"""

from refinery_py.store.exporter import StoreExporter
from refinery_py.store.queries import (
    CustomerSummary,
    CustomerVolume,
    TraceFilter,
    TracePage,
    TraceRow,
    Weighted,
    customer_summary,
    find_trace,
    list_customers,
    list_traces,
)
from refinery_py.store.reader import StoreReader
from refinery_py.store.schema import StoreUnavailable, open_for_reading, open_for_writing
from refinery_py.store.spans import spans_json
from refinery_py.store.writer import StoreWriter, WriteOutcome

__all__ = [
    "CustomerSummary",
    "CustomerVolume",
    "StoreExporter",
    "StoreReader",
    "StoreUnavailable",
    "StoreWriter",
    "TraceFilter",
    "TracePage",
    "TraceRow",
    "Weighted",
    "WriteOutcome",
    "customer_summary",
    "find_trace",
    "list_customers",
    "list_traces",
    "open_for_reading",
    "open_for_writing",
    "spans_json",
]
