"""Who is in the cluster: the member sources behind one small interface, and the view they make.

A member source produces the list of member nodes — advertised `host:port` names — and says
when it changes. Three sources exist: a static list (`static_members`), Redis heartbeats
(`redis_members`) and DNS records (`dns_members`). `ClusterController` runs one of them for a
node and turns each new list into a `ClusterView` for the node's workers; a node that is
leaving takes itself out of its own view at once, so it hands its traces to their new owners.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from refinery_py.telemetry.metrics import MembershipMetrics

log = logging.getLogger(__name__)

MembersChanged = Callable[[Sequence[str]], None]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The member nodes as one node sees them, and where the list came from."""

    nodes: tuple[str, ...]
    self_node: str
    source: str
    """single, static, redis or dns."""

    def as_json(self) -> dict[str, object]:
        return {"self": self.self_node, "members": list(self.nodes), "source": self.source}


class MemberSource(Protocol):
    """Produces the member list and notices when it changes."""

    async def start(self, changed: MembersChanged) -> None:
        """Join (register this node where the source needs it) and report the first list (and
        every later change) through `changed`."""
        ...

    async def stop(self) -> None:
        """Leave: deregister this node, and stop watching."""
        ...

    def refresh(self) -> None:
        """Look again now (SIGHUP, or a hint that something changed)."""
        ...


class StaticMembers:
    """A fixed list of members from the config (re-read on SIGHUP through `reread`).

    A static member that stops says so to the others (`announce`), and they leave it out until
    it announces that it is back, so a rolling restart or a scale-down moves its traces to the
    others instead of leaving them queued for a member that is not there. A member that dies
    without a word stays in the list: its spans wait (with backpressure) until it returns or the
    list is changed; use Redis or DNS membership to have dead members leave on their own.
    """

    def __init__(
        self,
        peers: Sequence[str],
        reread: Callable[[], Sequence[str] | None],
        *,
        node: str,
        announce: Announce | None = None,
    ) -> None:
        self._peers = tuple(peers)
        self._reread = reread
        self._node = node
        self._announce = announce
        self._departed: set[str] = set()
        self._changed: MembersChanged | None = None

    async def start(self, changed: MembersChanged) -> None:
        self._changed = changed
        changed(self._members())
        if self._announce is not None:
            await self._announce(self._others(), "join")

    async def stop(self) -> None:
        self._changed = None
        if self._announce is not None:
            await self._announce(self._others(), "leave")

    def refresh(self) -> None:
        peers = self._reread()
        if peers is None:
            return
        self._peers = tuple(peers)
        self._report()

    def member_event(self, node: str, joined: bool) -> None:
        """Another member announced that it left (or is back)."""
        if node == self._node or node not in self._peers:
            return
        if joined:
            self._departed.discard(node)
        else:
            self._departed.add(node)
        self._report()

    def _others(self) -> list[str]:
        return [peer for peer in self._peers if peer != self._node]

    def _members(self) -> tuple[str, ...]:
        return tuple(peer for peer in self._peers if peer not in self._departed)

    def _report(self) -> None:
        if self._changed is not None:
            self._changed(self._members())


Announce = Callable[[Sequence[str], str], Awaitable[None]]
"""Tell these members' doors that this node `join`s or `leave`s (best effort)."""


class ClusterController:
    """Runs a node's member source and hands out views: `on_view` hears every change.

    Without a source the node is alone (`single`). A leaving node is no member of its own view:
    every trace then has another owner, to whom it is handed.
    """

    def __init__(
        self,
        source: MemberSource | None,
        *,
        self_node: str,
        source_name: str,
        on_view: Callable[[ClusterView], None],
        metrics: MembershipMetrics,
    ) -> None:
        self._source = source
        self._source_name = source_name if source is not None else "single"
        self.self_node = self_node
        self._on_view = on_view
        self._metrics = metrics
        self._members: tuple[str, ...] = (self_node,)
        self._leaving = False
        self.view = ClusterView((self_node,), self_node, self._source_name)

    async def start(self) -> None:
        if self._source is not None:
            await self._source.start(self._changed)
        else:
            self._publish()

    async def leave(self) -> None:
        """Deregister and take this node out of its own view."""
        self._leaving = True
        if self._source is not None:
            await self._source.stop()
        self._publish()

    def refresh(self) -> None:
        if self._source is not None and not self._leaving:
            self._source.refresh()

    def member_event(self, node: str, joined: bool) -> None:
        """A member announced a join or a leave (static membership listens; others know)."""
        if isinstance(self._source, StaticMembers):
            self._source.member_event(node, joined)

    def _changed(self, members: Sequence[str]) -> None:
        self._members = tuple(sorted(set(members)))
        self._publish()

    def _publish(self) -> None:
        nodes = self._members
        if self._leaving:
            nodes = tuple(n for n in nodes if n != self.self_node)
        if nodes == self.view.nodes and self.view.source == self._source_name:
            return
        previous = self.view
        self.view = ClusterView(nodes, self.self_node, self._source_name)
        self._metrics.members.set(len(nodes))
        if previous.nodes != nodes:
            self._metrics.changes.inc()
            joined = sorted(set(nodes) - set(previous.nodes))
            left = sorted(set(previous.nodes) - set(nodes))
            log.info(
                "cluster members (%s): %d%s%s",
                self._source_name,
                len(nodes),
                f", joined {', '.join(joined)}" if joined else "",
                f", left {', '.join(left)}" if left else "",
            )
        self._on_view(self.view)
