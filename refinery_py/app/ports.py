"""Ports the node holds from start-up on, so that nobody can take them before its workers bind.

A node's worker processes share its OTLP ports (SO_REUSEPORT: the kernel spreads connections
over them) and each has its own peer port. Picking a free port and binding it later would leave
a window in which another program takes it; instead the supervisor binds every port itself at
start-up — a socket that is bound but never listens receives no connections — and keeps it until
the node stops. The workers bind the same ports with SO_REUSEPORT, which the kernel allows only
to sockets of the same user that all set it. A port already in use fails start-up at once, with
the address in the message.
"""

from __future__ import annotations

import contextlib
import socket

from refinery_py.model.addresses import join_host_port, split_host_port


class PortReservations:
    """Bound, non-listening SO_REUSEPORT sockets holding ports for the node's workers."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def reserve(self, address: str) -> str:
        """Hold `address` (`host:port`, port 0 for any free one); return it with the real port.

        Raises OSError saying which address could not be had.
        """
        host, port = split_host_port(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        self._sockets.append(sock)
        return join_host_port(host, sock.getsockname()[1])

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets = []
