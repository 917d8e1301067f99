"""Redis membership against a real redis-server: members see each other join, and see one that
stops leave.

(A stop that must end even when a cancellation is dropped: tests/unit/cluster/test_stop_tasks.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import redis.asyncio as aioredis

from refinery_py.cluster.redis_members import RedisMembers, member_key
from tests.e2e.cluster_harness import RedisServer


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def test_members_see_a_join_and_a_leave(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        seen: dict[str, list[Sequence[str]]] = {"a": [], "b": []}
        a = RedisMembers(server.url, name="t", node="a:1", ttl=60.0)
        b = RedisMembers(server.url, name="t", node="b:1", ttl=60.0)
        await a.start(seen["a"].append)
        await b.start(seen["b"].append)
        await _until(lambda: seen["a"][-1] == ("a:1", "b:1"))
        assert seen["b"][-1] == ("a:1", "b:1")
        await b.stop()
        # b deleted its key: gone from a's list, where its TTL (60 s) would have kept it.
        await _until(lambda: seen["a"][-1] == ("a:1",))
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.exists(member_key("t", "b:1")) == 0
            assert await client.exists(member_key("t", "a:1")) == 1
        finally:
            await client.aclose()
        await a.stop()
