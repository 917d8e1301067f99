"""The HTTP API: health, metrics, and the query endpoints."""
