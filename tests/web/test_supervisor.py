"""The supervisor's own parts: its listening sockets, the worker count, the threads' share."""

from __future__ import annotations

import socket

import pytest

from keel.cpus import usable_cpus
from keel.errors import AddressUnavailable
from keel.settings import RuntimeSettings, ServerSettings, Settings
from keel.web.supervisor import bind_listeners, divide_threads, oversubscribed, worker_count


def test_every_address_of_the_host_gets_a_socket_as_a_lone_server_binds_them() -> None:
    listeners = bind_listeners("", 0)
    try:
        families = {listener.family for listener in listeners}
        assert socket.AF_INET in families
        for listener in listeners:
            host = "127.0.0.1" if listener.family == socket.AF_INET else "::1"
            port = listener.getsockname()[1]
            with socket.create_connection((host, port), timeout=5):
                pass  # the kernel completed the handshake on this family's socket
    finally:
        for listener in listeners:
            listener.close()


def test_a_port_in_use_is_said_in_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AddressUnavailable) as refused:
            bind_listeners("127.0.0.1", port)
    message = str(refused.value)
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in message
    assert "--host/--port" in message


def test_auto_is_the_usable_cpus_and_a_number_is_itself() -> None:
    assert worker_count("auto") == usable_cpus()
    assert worker_count(3) == 3


def test_more_workers_than_cpus_is_warned_of_naming_both_and_auto() -> None:
    assert oversubscribed(2, 2) is None
    assert oversubscribed(1, 4) is None
    warning = oversubscribed(3, 2)
    assert warning is not None
    assert warning.startswith("3 workers on the 2 CPUs this container may use")
    assert "--workers auto" in warning
    assert "on the 1 CPU this" in str(oversubscribed(2, 1))


def test_one_thread_per_core_becomes_each_workers_share() -> None:
    settings = Settings(
        runtime=RuntimeSettings(intra_op_threads=0),
        server=ServerSettings(inference_threads=0),
    )
    divided = divide_threads(settings, 2)
    share = max(1, usable_cpus() // 2)
    assert divided.runtime.intra_op_threads == share
    assert divided.server.inference_threads == share
    # A count the user set is theirs.
    kept = Settings(runtime=RuntimeSettings(intra_op_threads=3))
    assert divide_threads(kept, 2).runtime.intra_op_threads == 3
