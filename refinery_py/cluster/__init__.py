"""Scale-out: which process owns a trace, and splitting batches by owner.

Every trace ID is owned by exactly one member (rendezvous hashing over the member list), so a
trace's spans are decided together wherever they arrived. Worker processes on one machine and
nodes of a cluster use the same mechanism: spans a member does not own are forwarded to the
owner over OTLP.
"""
