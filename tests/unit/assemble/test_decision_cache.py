from __future__ import annotations

from refinery_py.assemble import DecisionCache
from refinery_py.assemble.decision_cache import ENTRY_BYTES
from refinery_py.model import Decision, SendReason

KEEP = Decision(True, 1, "r")


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_decisions_are_remembered_for_the_ttl_and_then_forgotten() -> None:
    cache = DecisionCache(ttl=120.0, max_bytes=1 << 20)
    cache.record(tid(1), KEEP, SendReason.GOT_ROOT, now=0.0)
    cache.record(tid(2), Decision(False, 10, "x"), SendReason.EXPIRED, now=50.0)
    cache.expire(119.0)
    cached = cache.get(tid(1))
    assert cached is not None
    assert cached.decision is KEEP
    assert cached.send_reason is SendReason.GOT_ROOT
    cache.expire(121.0)
    assert cache.get(tid(1)) is None
    assert cache.get(tid(2)) is not None
    cache.expire(171.0)
    assert len(cache) == 0


def test_memory_bound_evicts_the_oldest_and_counts() -> None:
    cache = DecisionCache(ttl=1000.0, max_bytes=ENTRY_BYTES * 100)
    for n in range(150):
        cache.record(tid(n), KEEP, SendReason.GOT_ROOT, now=float(n) / 10)
    assert len(cache) == 100
    assert cache.evictions == 50
    assert cache.get(tid(49)) is None
    assert cache.get(tid(50)) is not None
    assert cache.get(tid(149)) is not None


def test_equal_decisions_share_one_entry_object() -> None:
    cache = DecisionCache(ttl=10.0, max_bytes=1 << 20)
    cache.record(tid(1), Decision(True, 3, "a"), SendReason.GOT_ROOT, now=0.0)
    cache.record(tid(2), Decision(True, 3, "a"), SendReason.GOT_ROOT, now=0.0)
    assert cache.get(tid(1)) is cache.get(tid(2))
