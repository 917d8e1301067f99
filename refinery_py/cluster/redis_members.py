"""Membership through Redis: every node keeps a key alive; the keys that live are the members.

Each node writes `<name>:member:<its address>` with a TTL and renews it every third of the TTL
(a heartbeat). A node that stops cleanly deletes its key; one that dies leaves the member lists
when its key expires. Every node lists the keys once a second, and at once when another node
announces a join or a leave on the `<name>:members` channel, so a planned change reaches every
node within milliseconds, and a crash within the TTL plus a second. Keys expire in Redis, so
the nodes' clocks do not matter. The cluster name prefixes every key, so several clusters can
share one Redis.

When Redis cannot be reached the last member list stays in force (a Redis outage must not
reshuffle the cluster), and the failure is logged. Start-up waits for Redis (up to
`START_TIMEOUT` seconds) rather than start alone and split traces with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from refinery_py.cluster.membership import MembersChanged
from refinery_py.cluster.stop_tasks import cancel_and_wait
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
LIST_INTERVAL = 1.0


def member_key(name: str, node: str) -> str:
    return f"{name}:member:{node}"


def events_channel(name: str) -> str:
    return f"{name}:members"


class RedisMembers:
    """The `MemberSource` for `cluster.redis`."""

    def __init__(self, url: str, *, name: str, node: str, ttl: float) -> None:
        self._url = url
        self._name = name
        self._node = node
        self._ttl_ms = max(100, int(ttl * 1000))
        self._client: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed: MembersChanged | None = None
        self._members: tuple[str, ...] | None = None
        self._wakeup = asyncio.Event()
        self._log = ThrottledLog(log, interval=10.0)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        return self._client

    async def start(self, changed: MembersChanged) -> None:
        self._changed = changed
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                await self._heartbeat()
                await self.client.publish(events_channel(self._name), f"join {self._node}")
                await self._list()
                break
            except (RedisError, OSError) as error:
                if time.monotonic() > deadline:
                    raise OSError(f"cannot reach Redis at {self._url}: {error}") from None
                self._log.report("start", "waiting for Redis at %s: %s", self._url, error)
                await asyncio.sleep(0.5)
        self._tasks = [
            asyncio.create_task(self._beat(), name="redis-heartbeat"),
            asyncio.create_task(self._watch(), name="redis-members"),
            asyncio.create_task(self._listen(), name="redis-member-events"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self._changed = None
        if self._client is not None:
            try:
                await self._client.delete(member_key(self._name, self._node))
                await self._client.publish(events_channel(self._name), f"leave {self._node}")
            except (RedisError, OSError) as error:
                log.warning("could not deregister from Redis (%s); the TTL will", error)
            await self._client.aclose()
            self._client = None

    def refresh(self) -> None:
        self._wakeup.set()

    async def _heartbeat(self) -> None:
        await self.client.set(member_key(self._name, self._node), b"1", px=self._ttl_ms)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._heartbeat()
            except (RedisError, OSError) as error:
                self._log.report("heartbeat", "Redis heartbeat failed: %s", error)

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LIST_INTERVAL):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._list()
            except (RedisError, OSError) as error:
                self._log.report("list", "listing members in Redis failed: %s", error)

    async def _listen(self) -> None:
        """Announcements of joins and leaves: look at once instead of within a second."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(events_channel(self._name))
                    async for _ in pubsub.listen():
                        self._wakeup.set()
            except (RedisError, OSError) as error:
                self._log.report("events", "Redis member events failed: %s", error)
                await asyncio.sleep(1.0)

    async def _list(self) -> None:
        prefix = member_key(self._name, "")
        found: list[str] = []
        async for key in self.client.scan_iter(match=_escape(prefix) + "*", count=500):
            text = key.decode() if isinstance(key, bytes) else str(key)
            found.append(text[len(prefix) :])
        members = tuple(sorted(found))
        if members != self._members:
            self._members = members
            if self._changed is not None:
                self._changed(members)


def _escape(pattern: str) -> str:
    """A literal for Redis' glob-style MATCH."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in pattern)
