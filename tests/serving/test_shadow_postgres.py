"""Two keel servers mirror traffic at the same time and log to one real PostgreSQL database."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel_server import ServerProcess, start_server
from test_shadow_mirror import MODEL, PREDICT, read_log, wait_counted, wait_shadow_ready

REQUESTS_PER_SERVER = 40


def test_two_servers_log_their_shadow_comparisons_to_one_postgresql_database(
    demo_registry: Path,
    held_out: list[dict[str, Any]],
    postgres_url: str,
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    servers = []
    for replica in ("a", "b"):
        server = start_server(
            demo_registry, (f"{MODEL}@production",), tmp_path / f"{replica}.log",
            args=("--shadow", f"{MODEL}@candidate", "--log-store", postgres_url),
            KEEL_SERVER__WATCH_INTERVAL_S="0", KEEL_SHADOW__TIMEOUT_MS="5000",
        )  # fmt: skip
        stop_later(server)
        servers.append(server)
    for server in servers:
        server.wait_ready()
        wait_shadow_ready(server)

    ids: dict[str, list[str]] = {}

    def traffic(server: ServerProcess) -> None:
        sent = ids.setdefault(server.url, [])
        with server.client() as client:
            for i in range(REQUESTS_PER_SERVER):
                request_id = f"{server.url}#{i}"
                batch = held_out[i % 10 * 5 : i % 10 * 5 + 5]
                answer = client.post(PREDICT, json={"id": request_id, "instances": batch})
                assert answer.status_code == 200, answer.text
                sent.append(request_id)

    # Both replicas answer and log at once.
    threads = [threading.Thread(target=traffic, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for server in servers:
        assert wait_counted(server, REQUESTS_PER_SERVER) == {"ok": REQUESTS_PER_SERVER}
        assert server.stop() in (0, -signal.SIGTERM)

    records = read_log(postgres_url)
    assert len(records) == 2 * REQUESTS_PER_SERVER
    assert sorted(r.request_id for r in records) == sorted(
        ids[servers[0].url] + ids[servers[1].url]
    )
    assert Counter(r.status.value for r in records) == {"ok": 2 * REQUESTS_PER_SERVER}
    assert all(r.rows == 5 for r in records)
    assert all(
        r.candidate_output is not None and r.candidate_output["label"].shape == (5,)
        for r in records
    )
