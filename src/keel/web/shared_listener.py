"""Accepting from a listening socket that every worker of the server shares, evenly.

uvloop (libuv) accepts every connection waiting on a socket each time it is
readable, so of two workers sharing one, whichever woke first took a client's 64
connections at once, and the other served none of them: measured with wrk, two
workers then answered what one does. Here a worker accepts one connection each
time the socket is readable, then lets its loop run: while connections wait, every
worker that is free to take one takes one in turn, and a worker busy with requests
takes fewer. The kernel still queues each connection once, so a worker that dies
leaves none waiting on a queue of its own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("keel.web")

# Out of file descriptors: accept() fails at once while the socket stays readable, so
# accepting pauses this long rather than spin; the connection cap keeps it rare.
_PAUSE_WHEN_FULL_S = 0.1
_FULL = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class SharedListener:
    """Serves connections from ``socks`` (listening, shared) with ``protocol_factory``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        socks: list[socket.socket],
        protocol_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.sockets = socks
        self._loop = loop
        self._factory = protocol_factory
        self._pending: set[asyncio.Task[object]] = set()
        self._serving = True
        for sock in socks:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            connection, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            if exc.errno in _FULL:
                log.warning("cannot accept connections (%s); pausing", exc.strerror)
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(_PAUSE_WHEN_FULL_S, self._resume, sock)
            return  # ECONNABORTED and the like: the client left before it was accepted
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, connection))
        self._pending.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a connection could not be set up: %s", task.exception())

    def _resume(self, sock: socket.socket) -> None:
        if self._serving:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting; the sockets stay open for the other workers (and the supervisor)."""
        if self._serving:
            self._serving = False
            for sock in self.sockets:
                self._loop.remove_reader(sock.fileno())
