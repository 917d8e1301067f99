"""The member source a node's config asks for, built for the node that will run it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from refinery_py.cluster.announce import announcer
from refinery_py.cluster.dns_members import DnsMembers
from refinery_py.cluster.link import LinkTls
from refinery_py.cluster.membership import MemberSource, StaticMembers
from refinery_py.cluster.redis_members import RedisMembers
from refinery_py.config.problems import ConfigError
from refinery_py.config.settings import Settings, load_settings
from refinery_py.model.addresses import split_host_port

log = logging.getLogger("refinery_py")


def member_source(settings: Settings, node: str, tls: LinkTls | None = None) -> MemberSource | None:
    """The source of `settings.cluster` for the node named `node`; None for a lone node.
    Static members' announcements go over TLS with `tls`."""
    cluster = settings.cluster
    if cluster.peers is not None:
        return StaticMembers(
            cluster.peers,
            lambda: _reread_peers(settings.source),
            node=node,
            announce=announcer(node, cluster.secret, tls),
        )
    if cluster.redis is not None:
        redis = cluster.redis
        return RedisMembers(redis.url, name=redis.name, node=node, ttl=redis.ttl)
    if cluster.dns is not None:
        host, port = split_host_port(cluster.dns)
        return DnsMembers(host, port, refresh=cluster.dns_refresh)
    return None


def _reread_peers(path: str) -> Sequence[str] | None:
    """`cluster.peers` from the config file as it is now; None (keep the list) if unusable."""
    if not path:
        return None
    try:
        peers = load_settings(path).cluster.peers
    except ConfigError as exc:
        log.error("SIGHUP: the config file has problems; keeping the member list: %s", exc)
        return None
    if peers is None:
        log.error("SIGHUP: the config file no longer lists cluster.peers; keeping the list")
        return None
    return peers
