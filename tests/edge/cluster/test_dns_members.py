"""DNS membership: the members are a name's addresses with the peer port, re-resolved."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from refinery_py.cluster import dns_members
from refinery_py.cluster.dns_members import DnsMembers
from refinery_py.model.addresses import join_host_port


async def test_the_members_are_the_names_addresses_with_the_port() -> None:
    expected = sorted(
        {
            join_host_port(str(info[4][0]), 4319)
            for info in socket.getaddrinfo("localhost", 4319, type=socket.SOCK_STREAM)
        }
    )
    seen: list[Sequence[str]] = []
    source = DnsMembers("localhost", 4319, refresh=0.05)
    await source.start(seen.append)
    try:
        assert [list(s) for s in seen] == [expected]
        await asyncio.sleep(0.2)  # resolved again, unchanged: nobody is told
        assert len(seen) == 1
    finally:
        await source.stop()


async def test_new_records_change_the_members_and_a_failed_lookup_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Records that change and a resolver that fails cannot be produced on loopback without a DNS
    # server of our own; the resolver's answers are scripted instead.
    answers: list[list[str] | OSError] = [
        ["10.0.0.1", "10.0.0.2"],
        ["10.0.0.2", "10.0.0.1"],  # same set, other order
        OSError("temporary failure in name resolution"),
        [],
        ["10.0.0.1", "10.0.0.2", "fd00::3"],
    ]

    async def scripted(self: Any, host: str, port: int, **_: Any) -> list[Any]:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, OSError):
            raise answer
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", scripted)
    seen: list[tuple[str, ...]] = []
    source = DnsMembers("refinery-peers.example", 4319, refresh=0.02)
    await source.start(lambda members: seen.append(tuple(members)))
    try:
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await source.stop()
    assert seen == [
        ("10.0.0.1:4319", "10.0.0.2:4319"),
        ("10.0.0.1:4319", "10.0.0.2:4319", "[fd00::3]:4319"),
    ]


async def test_a_name_that_never_resolves_fails_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_members, "START_TIMEOUT", 0.3)
    source = DnsMembers("no-such-host.invalid", 4319, refresh=1.0)
    with pytest.raises(OSError, match="did not resolve"):
        await source.start(lambda _: None)
