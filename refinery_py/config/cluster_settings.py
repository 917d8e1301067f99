"""Settings of the cluster (`cluster:`): who the members are, and how they talk.

At most one of `peers`, `redis` and `dns` names the members; none means a node on its own.
"""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

from dataclasses import dataclass

from refinery_py.config.addresses import HostPort
from refinery_py.config.loader import Reader
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.schema_fields import option
from refinery_py.config.units import ByteSize, Seconds

MiB = 1024**2

MEMBER_SOURCES = ("peers", "redis", "dns")


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisMembershipSettings:
    """Membership through a Redis server: each node keeps a key alive with heartbeats."""

    url: str = option(
        "url",
        "The Redis server, as a redis:// (or rediss:// for TLS) URL with an optional database.",
        required=True,
    )
    name: str = option(
        "name",
        "The cluster's name: nodes with the same name form one cluster, so several clusters can "
        "share one Redis.",
        default="refinery",
    )
    ttl: Seconds = option(
        "ttl",
        "How long a node's registration lives without a heartbeat: a node that dies leaves the "
        "member lists this long after its last heartbeat (heartbeats go every third of it).",
        default=Seconds(3.0),
        exclusive_minimum=0,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """Several nodes sampling as one: each trace ID is owned by exactly one member."""

    advertise: HostPort | None = option(
        "advertise",
        "How other members reach this node's listen.peer (default: listen.peer itself; with "
        "several workers, worker i is reached on the next ports: port + i).",
        default=None,
    )
    peers: tuple[HostPort, ...] | None = option(
        "peers",
        "Static membership: every member's advertised address, this node's included; re-read "
        "on SIGHUP.",
        default=None,
    )
    redis: RedisMembershipSettings | None = option(
        "redis", "Membership through a Redis server (heartbeats with a TTL).", default=None
    )
    dns: HostPort | None = option(
        "dns",
        "Membership from a DNS name's A/AAAA records (a Kubernetes headless service) and the "
        "peer port, as host:port; re-resolved every dns_refresh.",
        default=None,
    )
    dns_refresh: Seconds = option(
        "dns_refresh",
        "How often the dns name is resolved again.",
        default=Seconds(5.0),
        exclusive_minimum=0,
    )
    secret: str | None = option(
        "secret",
        "A shared secret every member sends on its peer requests and requires on its own peer "
        "door; null leaves the peer door open (then forwarded spans are validated again).",
        default=None,
    )
    tls_ca_file: str | None = option(
        "tls_ca_file",
        "PEM CA certificates this node checks other members' peer doors against when the peer "
        "door uses TLS; null: tls.client_ca_file if set, else the system's trusted CAs.",
        default=None,
    )
    tls_server_name: str | None = option(
        "tls_server_name",
        "The name every member's peer certificate is checked against (one certificate for the "
        "whole cluster, say); null: the host of the member's address, which the certificate "
        "must then name (an IP address needs an IP SAN).",
        default=None,
    )
    queue_max_bytes: ByteSize = option(
        "queue_max_bytes",
        "Memory for spans waiting to be forwarded to one other member; when it fills, or when "
        "the spans at its head have waited a quarter of traces.send_delay (at least 0.5 s; "
        "longer, and they would reach their owner after it decided their trace), front-door "
        "requests with spans for that member are refused (429 / RESOURCE_EXHAUSTED) until it "
        "moves.",
        default=ByteSize(64 * MiB),
        exclusive_minimum=0,
    )
    forward_linger: Seconds = option(
        "forward_linger",
        "How long spans bound for another member or worker may wait for more to join them in "
        "one request (0: each batch goes at once). Without a wait most requests carry the "
        "spans of one front-door request, and a request costs its two ends about what a few "
        "hundred spans do: with two workers at 90k spans/s, 50 ms took 3-8% off the node's "
        "CPU per span and a fifth of its context switches. Spans leave as soon as 2 MiB are "
        "waiting, and never wait at shutdown or when a member leaves. At most 0.25 s: "
        "forwarded spans that have waited 0.5 s make the front doors refuse requests (see "
        "queue_max_bytes).",
        default=Seconds(0.05),
        minimum=0,
        maximum=0.25,
    )
    drain_timeout: Seconds = option(
        "drain_timeout",
        "How long a leaving member keeps passing on spans still sent to it after it handed its "
        "traces to their new owners (it stops early once none arrive for a second).",
        default=Seconds(10.0),
        minimum=0,
    )
    line: int = 0

    @property
    def source(self) -> str:
        """Where the member list comes from: single, static, redis or dns."""
        if self.peers is not None:
            return "static"
        if self.redis is not None:
            return "redis"
        if self.dns is not None:
            return "dns"
        return "single"

    @property
    def enabled(self) -> bool:
        return self.source != "single"


def check_redis(reader: Reader, view: MappingView) -> None:
    """The URL must be one redis-py can open."""
    url = view.get("url")
    if isinstance(url, str) and not url.startswith(("redis://", "rediss://", "unix://")):
        reader.error(
            view.value_line("url"),
            f"{view.path_of('url')} must start with redis://, rediss:// or unix:// (found {url!r})",
        )
        view.fail("url")


def check_cluster(reader: Reader, view: MappingView) -> None:
    """At most one member source; a static list must not be empty."""
    named = [key for key in MEMBER_SOURCES if view.get(key) is not None]
    if len(named) > 1:
        reader.error(
            view.line(named[1]),
            f"{view.path_of(named[1])}: choose one of cluster.peers, cluster.redis and "
            f"cluster.dns (found {', '.join(named)})",
        )
        view.fail(named[1])
    peers = view.get("peers")
    if isinstance(peers, tuple) and not peers:
        reader.error(view.line("peers"), f"{view.path_of('peers')} must list at least one member")
        view.fail("peers")
    elif isinstance(peers, tuple) and len(set(peers)) != len(peers):
        reader.error(view.line("peers"), f"{view.path_of('peers')} lists a member twice")
        view.fail("peers")
