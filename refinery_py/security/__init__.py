"""TLS material and ingest tokens read from files, and kept current when the files change.

`tls` holds what a process's TLS doors present (`ServerCertificate`) and what its TLS clients
trust and present (`ClientCertificate`); `tokens` re-reads ingest token files; `watch` polls every
file for changes (and checks at once on SIGHUP). Only `app/` builds these; the doors and clients
receive plain `ssl.SSLContext`s, gRPC credentials and callables, so they need not know where the
material comes from.
"""
