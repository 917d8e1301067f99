"""A multi-worker node's side of the cluster, run by its supervisor for all of its workers.

The agent runs the membership (so the node registers once, not once per worker), tells every
worker each new view (retrying a worker until it has taken the newest; a worker that restarts
gets the current view when it is spawned), passes on static members' announcements that reach a
worker's peer door, and, with Redis, shares the node's rules changes with the cluster and hands
the cluster's changes to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from refinery_py.app.membership import member_source
from refinery_py.app.role import ClusterRole
from refinery_py.app.rules_admin import RULES_POLL_INTERVAL
from refinery_py.app.worker_client import WorkerClient
from refinery_py.cluster.link import LinkTls
from refinery_py.cluster.membership import ClusterController, ClusterView
from refinery_py.cluster.rules_sync import RulesSync
from refinery_py.config.problems import ConfigError
from refinery_py.config.rules_file import RulesFile
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.telemetry.metrics import MembershipMetrics


class ClusterAgent:
    """Membership, views and shared rules for the workers of one node."""

    def __init__(
        self,
        settings: Settings,
        role: ClusterRole,
        *,
        client: WorkerClient,
        live_workers: Callable[[], list[int]],
        rules: RulesSpec,
        registry: CollectorRegistry,
        link_tls: LinkTls | None = None,
    ) -> None:
        self._client = client
        self._live_workers = live_workers
        self.controller = ClusterController(
            member_source(settings, role.node, link_tls),
            self_node=role.node,
            source_name=settings.cluster.source,
            on_view=self._new_view,
            metrics=MembershipMetrics(registry),
        )
        self._rules = rules
        self.rules_digest = rules.digest
        self.rules_sync: RulesSync | None = None
        if settings.cluster.redis is not None:
            redis = settings.cluster.redis
            self.rules_sync = RulesSync(redis.url, name=redis.name, node=role.node)
        self._version = 0
        self._acked: dict[int, int] = {}
        self._pusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def view(self) -> ClusterView:
        return self.controller.view

    async def start(self) -> None:
        """Join the cluster (before the workers start: they begin with the real view)."""
        await self.controller.start()

    def run_shared_rules(self) -> None:
        """Share rules changes both ways (Redis only); call once the workers serve."""
        if self.rules_sync is None:
            return
        self.rules_sync.start(self._rules_arrived, lambda: self.rules_digest)
        self._spawn(self._share_rule_changes())

    async def leave(self, timeout: float) -> None:
        """Leave the cluster and wait (up to `timeout`) until every worker has the new view,
        so each has handed its traces to their new owners."""
        await self.controller.leave()
        if self._pusher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pusher), timeout)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.rules_sync is not None:
            await self.rules_sync.stop()

    def spawned(self, index: int) -> None:
        """Worker `index` starts now, with the current view in its role."""
        self._acked[index] = self._version

    # ---- views ----------------------------------------------------------------------------

    def _new_view(self, _: ClusterView) -> None:
        self._version += 1
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_views(), name="view-pusher")

    async def _push_views(self) -> None:
        """Until every live worker has the newest view."""
        while True:
            version, view = self._version, self.view
            behind = [i for i in self._live_workers() if self._acked.get(i, 0) < version]
            if not behind:
                return
            results = await asyncio.gather(*(self._client.push_view(i, view) for i in behind))
            for index, ok in zip(behind, results, strict=True):
                if ok:
                    self._acked[index] = max(self._acked.get(index, 0), version)
            if not all(results):
                await asyncio.sleep(0.2)

    async def membership_event(self, request: web.Request) -> web.Response:
        """A worker passes on a static member's announcement."""
        document = await request.json()
        self.controller.member_event(str(document["node"]), bool(document["joined"]))
        return web.json_response({"noted": True})

    # ---- rules shared by the cluster (Redis) ---------------------------------------------

    async def _share_rule_changes(self) -> None:
        """Watch the rules file the workers watch; share each valid change with the cluster."""
        source = Path(self._rules.source) if self._rules.source else None
        if self.rules_sync is None or source is None or not source.is_file():
            return
        watched = RulesFile(source)
        while True:
            await asyncio.sleep(RULES_POLL_INTERVAL)
            if not watched.changed():
                continue
            try:
                spec = watched.load()
            except ConfigError:
                continue  # the workers reject it and say why
            if spec.digest != self.rules_digest:
                self.rules_digest = spec.digest
                await self.rules_sync.publish(spec.text, spec.digest)

    def _rules_arrived(self, text: str, digest: str, member: str) -> None:
        """Another member's rules: every worker switches to them."""
        self.rules_digest = digest
        document = {"text": text, "digest": digest, "member": member}
        self._spawn(self._push_rules(document))

    async def _push_rules(self, document: dict[str, str]) -> None:
        await asyncio.gather(
            *(
                self._client.request(i, "POST", "/internal/rules", json=document)
                for i in self._live_workers()
            )
        )

    def _spawn(self, work: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
