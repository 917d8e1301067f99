"""Membership from DNS: the A/AAAA records of a name, as for a Kubernetes headless service.

Every `refresh` seconds the name is resolved again; the members are its addresses with the
configured peer port (IPv6 in brackets). Each node must advertise exactly the address the
records hold for it (on Kubernetes, the pod IP: `cluster.advertise: $(POD_IP):4319`).

Kubernetes adds a pod to a headless service's records once it is ready and removes it when it
terminates, so joins and leaves follow readiness; a resolution that fails or comes back empty
keeps the last list (a DNS hiccup must not reshuffle the cluster); start-up waits for a first
answer (up to `START_TIMEOUT`) rather than start alone. A node the records do not list yet owns
nothing and forwards everything it receives, which is what the others expect of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from refinery_py.cluster.membership import MembersChanged
from refinery_py.cluster.stop_tasks import cancel_and_wait
from refinery_py.model.addresses import join_host_port
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class DnsMembers:
    """The `MemberSource` for `cluster.dns`."""

    def __init__(self, host: str, port: int, *, refresh: float) -> None:
        self._host = host
        self._port = port
        self._refresh = refresh
        self._changed: MembersChanged | None = None
        self._members: tuple[str, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._log = ThrottledLog(log, interval=30.0)

    async def start(self, changed: MembersChanged) -> None:
        """Wait for a first answer (up to START_TIMEOUT: a node that cannot see the others must
        not start alone and split traces with them), then keep resolving."""
        self._changed = changed
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._resolve():
            if time.monotonic() > deadline:
                raise OSError(f"{self._host} did not resolve to any address")
            await asyncio.sleep(0.5)
        self._task = asyncio.create_task(self._loop(), name="dns-members")

    async def stop(self) -> None:
        self._changed = None
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    def refresh(self) -> None:
        self._wakeup.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh):
                    await self._wakeup.wait()
            self._wakeup.clear()
            await self._resolve()

    async def _resolve(self) -> bool:
        """Resolve once; whether an answer came (a failed or empty one keeps the last list)."""
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as error:
            self._log.report("resolve", "resolving %s failed: %s", self._host, error)
            return False
        members = tuple(
            sorted({join_host_port(str(address[4][0]), self._port) for address in answers})
        )
        if not members:
            self._log.report("empty", "%s resolved to no addresses", self._host)
            return False
        if members != self._members:
            self._members = members
            if self._changed is not None:
                self._changed(members)
        return True
