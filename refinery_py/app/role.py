"""A process's place in its node and its node's place in the cluster, as plain data.

The supervisor works these out once (ports reserved, names advertised) and hands each worker
process its role; a node of one worker builds its own. Workers of one node talk over Unix
sockets in a private directory: a worker's peer door (`worker-N.peer`) and its API
(`worker-N.api`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from refinery_py.cluster.body_file import in_shared_memory
from refinery_py.cluster.link import UNIX_PREFIX
from refinery_py.cluster.membership import ClusterView
from refinery_py.config.settings import Settings
from refinery_py.model.addresses import join_host_port, split_host_port


@dataclass(frozen=True)
class ClusterRole:
    """The node in a cluster: its advertised name and every worker's peer door."""

    node: str
    """The node's name among the members: its advertised address (its first worker's door)."""
    doors: tuple[str, ...]
    """Every worker's peer door as other nodes reach it (advertised host, port + i)."""
    listen: tuple[str, ...]
    """Every worker's peer door as it binds it (listen.peer host, the reserved port)."""
    view: ClusterView
    """The members when the process starts (updates come later)."""


@dataclass(frozen=True)
class WorkerRole:
    """Worker `index` of a node of `workers` worker processes."""

    index: int
    workers: int
    private_dir: str = ""
    """Where the node's workers have their Unix sockets ("" for a node of one process)."""
    cluster: ClusterRole | None = None

    @property
    def alone(self) -> bool:
        """One worker and no cluster: nothing is ever forwarded."""
        return self.workers == 1 and self.cluster is None

    @property
    def body_dir(self) -> Path | None:
        """Where workers leave each other request bodies (`cluster.body_file`): the private
        directory when it is in shared memory, else None (bodies go over the sockets)."""
        if self.workers > 1 and in_shared_memory(self.private_dir):
            return Path(self.private_dir)
        return None

    def sibling_doors(self) -> tuple[str, ...]:
        """Each worker's private peer door (its Unix socket), as a link address."""
        return tuple(
            UNIX_PREFIX + str(peer_socket(self.private_dir, i)) for i in range(self.workers)
        )


def peer_socket(private_dir: str, index: int) -> Path:
    return Path(private_dir) / f"worker-{index}.peer"


def api_socket(private_dir: str, index: int) -> Path:
    return Path(private_dir) / f"worker-{index}.api"


def supervisor_socket(private_dir: str) -> Path:
    """Where the supervisor hears from its workers (announcements of static members)."""
    return Path(private_dir) / "supervisor.sock"


def cluster_role(
    settings: Settings, workers: int, reserve: Callable[[str], str]
) -> ClusterRole | None:
    """The node's names in its cluster, with every worker's peer port reserved (`reserve` binds
    an address and returns it with its real port); None when no cluster is configured.

    Raises ValueError when other members could not reach this node by the address it would
    advertise, and OSError when a peer port is taken.
    """
    cluster = settings.cluster
    if not cluster.enabled:
        return None
    host, port = split_host_port(settings.listen.peer)
    listen = tuple(
        reserve(join_host_port(host, port + index if port else 0)) for index in range(workers)
    )
    if cluster.advertise is not None:
        advertised_host, advertised_port = split_host_port(cluster.advertise)
        if not advertised_port and port:
            raise ValueError("cluster.advertise needs a real port, not 0")
    else:
        advertised_host, advertised_port = host, port
        if ipaddress_is_unspecified(host):
            raise ValueError(
                f"listen.peer is {settings.listen.peer}: set cluster.advertise to the address "
                "other members reach this node at"
            )
    doors = tuple(
        join_host_port(
            advertised_host,
            advertised_port + index if advertised_port else split_host_port(listen[index])[1],
        )
        for index in range(workers)
    )
    node = doors[0]
    return ClusterRole(node, doors, listen, ClusterView((node,), node, cluster.source))


def ipaddress_is_unspecified(host: str) -> bool:
    """0.0.0.0, ::, or an empty host: listening everywhere, reachable nowhere in particular."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return not host
