"""Taking the addresses keel listens on, and the one wording of "keel cannot listen there"."""

from __future__ import annotations

import errno
import socket

from keel.errors import AddressUnavailable

# Connections waiting to be accepted, as the kernel queues them.
BACKLOG = 2048


def address_unavailable(
    host: str, port: int, exc: OSError | str, *, grpc: bool = False
) -> AddressUnavailable:
    """Why keel cannot listen at ``host:port`` (for HTTP, or gRPC), and what to do about it."""
    if isinstance(exc, str):
        reason = exc
    elif exc.errno == errno.EADDRINUSE:
        reason = "the address is already in use (another server listens there)"
    else:
        reason = exc.strerror or str(exc)
    if grpc:
        return AddressUnavailable(
            f"cannot listen for gRPC on {host}:{port}: {reason}; choose another port with "
            "--grpc-port or KEEL_SERVER__GRPC_PORT (0 = no gRPC)"
        )
    return AddressUnavailable(
        f"cannot listen on {host}:{port}: {reason}; choose another with --host/--port "
        "or KEEL_SERVER__HOST/KEEL_SERVER__PORT"
    )


def check_grpc_port(host: str, port: int) -> None:
    """Refuse a gRPC port another server holds, before the workers share it.

    Each worker binds the gRPC port itself with SO_REUSEPORT (grpcio cannot take an
    inherited socket), and the kernel would share the port with any other server of the
    same user that did the same: binding it once here without that option finds one.
    """
    try:
        for listener in bind_listeners(host, port):
            listener.close()
    except AddressUnavailable as exc:
        reason = str(exc).partition(f"{port}: ")[2].partition(";")[0]
        raise address_unavailable(host, port, reason, grpc=True) from None


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """The listening sockets every worker inherits: one per address ``host`` names.

    As a lone server's: ``localhost`` is 127.0.0.1 and ::1 both, and ``""`` every
    address of both families.
    """
    listeners: list[socket.socket] = []
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Each family has its own socket, as asyncio binds them.
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise address_unavailable(host, port, exc) from None
    return listeners
