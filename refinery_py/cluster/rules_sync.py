"""One set of rules for the whole cluster: a rules change on one member reaches the others.

With Redis membership, a member that applies new rules (its file changed, SIGHUP, the reload
API) stores the rules text under `<name>:rules` and announces its digest on the `<name>:rules`
channel; every other member that runs different rules reads the text, checks it like a rules
file, and switches to it (keeping its samplers' learned state where their configuration did not
change). Rules that arrive this way are not written to the member's own file: a member that
restarts runs its file again, so keep the files in step (configuration management, a shared
volume) and use this for changes that must apply everywhere now. The last change wins.

Static and DNS clusters have no shared store: each member watches its own rules file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from refinery_py.cluster.stop_tasks import cancel_and_wait
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

RulesArrived = Callable[[str, str, str], None]
"""(rules text, its digest, the member that published it)."""


def rules_key(name: str) -> str:
    return f"{name}:rules"


class RulesSync:
    """Publishes this member's rules changes and hears the others'."""

    def __init__(self, url: str, *, name: str, node: str) -> None:
        self._client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._name = name
        self._node = node
        self._task: asyncio.Task[None] | None = None
        self._log = ThrottledLog(log, interval=30.0)

    def start(self, arrived: RulesArrived, current_digest: Callable[[], str]) -> None:
        self._task = asyncio.create_task(self._listen(arrived, current_digest), name="rules-sync")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self._client.aclose()

    async def publish(self, text: str, digest: str) -> None:
        """Make `text` the cluster's rules (best effort: a Redis outage is logged)."""
        document = json.dumps({"text": text, "digest": digest, "node": self._node})
        try:
            await self._client.set(rules_key(self._name), document)
            await self._client.publish(rules_key(self._name), digest)
        except (RedisError, OSError) as error:
            log.error("could not share the new rules with the cluster: %s", error)

    async def _listen(self, arrived: RulesArrived, current_digest: Callable[[], str]) -> None:
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(rules_key(self._name))
                    async for message in pubsub.listen():
                        digest = message.get("data", b"")
                        if isinstance(digest, bytes):
                            digest = digest.decode()
                        if digest != current_digest():
                            await self._fetch(arrived, current_digest)
            except (RedisError, OSError) as error:
                self._log.report("listen", "listening for rules changes failed: %s", error)
                await asyncio.sleep(1.0)

    async def _fetch(self, arrived: RulesArrived, current_digest: Callable[[], str]) -> None:
        raw = await self._client.get(rules_key(self._name))
        if raw is None:
            return
        try:
            document = json.loads(raw)
            text, digest, node = str(document["text"]), str(document["digest"]), document["node"]
        except (ValueError, KeyError, TypeError):
            log.error("the cluster's shared rules in Redis are unreadable; ignoring them")
            return
        if digest != current_digest():
            arrived(text, digest, str(node))
