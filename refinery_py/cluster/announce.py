"""Telling the other members of a static cluster that this node leaves or is back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp

from refinery_py.cluster.link import LinkTls, door_url
from refinery_py.cluster.membership import Announce

log = logging.getLogger(__name__)

MEMBERSHIP_PATH = "/peer/v1/membership"
_TIMEOUT = aiohttp.ClientTimeout(total=3, sock_connect=1)


def announcer(node: str, secret: str | None, tls: LinkTls | None = None) -> Announce:
    """An `Announce` that POSTs `{"node", "event"}` to each member's peer door (over TLS with
    `tls`)."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    async def announce(doors: Sequence[str], event: str) -> None:
        if not doors:
            return
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:

            async def tell(door: str) -> None:
                try:
                    async with session.post(
                        door_url(door, MEMBERSHIP_PATH, tls),
                        json={"node": node, "event": event},
                        headers=headers,
                        ssl=tls.context() if tls is not None else True,
                        server_hostname=tls.server_name if tls is not None else None,
                    ) as response:
                        if response.status != 200:
                            log.warning(
                                "member %s did not take our %s: %d", door, event, response.status
                            )
                except (aiohttp.ClientError, TimeoutError, OSError) as error:
                    # A member that is down hears of it when it asks (it lists us as it
                    # restarts); nothing else to do.
                    log.info("could not tell %s that we %s: %s", door, event, type(error).__name__)

            await asyncio.gather(*(tell(door) for door in doors))

    return announce
