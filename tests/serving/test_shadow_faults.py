"""Faults around shadow mode that must never reach the primary: a dead log store or candidate."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel_server import ServerProcess, start_server
from test_shadow_mirror import (
    MODEL,
    PREDICT,
    read_log,
    shadow_state,
    start_shadowed,
    wait_counted,
    wait_for,
    wait_shadow_ready,
)

from postgres_server import PostgresServer


def metric(server: ServerProcess, name: str, labels: str = "") -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def send(server: ServerProcess, records: list[dict[str, Any]], count: int) -> None:
    with server.client() as client:
        for i in range(count):
            answer = client.post(PREDICT, json={"instances": records[i % 20 : i % 20 + 3]})
            assert answer.status_code == 200, answer.text


def test_a_dead_log_store_costs_log_records_never_answers_and_the_log_recovers(
    demo_registry: Path,
    held_out: list[dict[str, Any]],
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    server = start_shadowed(
        demo_registry, postgres_url, tmp_path / "server.log", stop_later,
        KEEL_SHADOW__LOG__FLUSH_INTERVAL_S="0.1",
    )  # fmt: skip
    send(server, held_out, 10)
    wait_for(lambda: metric(server, "keel_prediction_log_written_total") == 10, "10 written")

    postgres_server.stop()
    try:
        # Every request is still answered while the log cannot be written.
        send(server, held_out, 30)
        wait_for(
            lambda: metric(server, "keel_prediction_log_up") == 0.0, "the log to be marked down"
        )
        wait_for(
            lambda: metric(server, "keel_prediction_log_pending") == 0.0, "the buffer to drain"
        )
    finally:
        postgres_server.start()
    assert metric(server, "keel_prediction_log_dropped_total", '{reason="store_error"}') > 0

    # Back: later records are written again, by the same server, without a restart.
    send(server, held_out, 20)
    wait_counted(server, 60)

    def settled() -> bool:
        written = metric(server, "keel_prediction_log_written_total")
        return written >= 29 and written + dropped() == 60

    def dropped() -> float:
        return metric(server, "keel_prediction_log_dropped_total", '{reason="store_error"}')

    wait_for(settled, "records to be written again")
    assert metric(server, "keel_prediction_log_up") == 1.0
    lost = dropped()
    assert server.stop() in (0, -signal.SIGTERM)
    # Nothing accepted is unaccounted for: each record is in the log or counted as dropped.
    assert len(read_log(postgres_url)) == 60 - lost
    assert "prediction log" in (tmp_path / "server.log").read_text()


def test_a_candidate_killed_mid_traffic_is_counted_and_the_primary_never_notices(
    demo_registry: Path,
    held_out: list[dict[str, Any]],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    candidate = start_server(
        demo_registry, (f"{MODEL}@candidate",), tmp_path / "candidate.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    stop_later(candidate)
    candidate.wait_ready()
    log_url = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    primary = start_server(
        demo_registry, (f"{MODEL}@production",), tmp_path / "primary.log",
        args=("--shadow-url", f"{candidate.url}/v2/models/{MODEL}", "--log-store", log_url),
        KEEL_SERVER__WATCH_INTERVAL_S="0", KEEL_SHADOW__TIMEOUT_MS="2000",
    )  # fmt: skip
    stop_later(primary)
    primary.wait_ready()
    wait_shadow_ready(primary)
    send(primary, held_out, 10)
    assert wait_counted(primary, 10) == {"ok": 10}

    candidate.process.send_signal(signal.SIGKILL)
    candidate.process.wait(10)
    send(primary, held_out, 10)
    counts = wait_counted(primary, 20)
    assert counts == {"ok": 10, "error": 10}
    assert shadow_state(primary)["candidate"]["ready"] is True
    assert primary.stop() in (0, -signal.SIGTERM)
    errors = [r.error or "" for r in read_log(log_url) if r.status.value == "error"]
    assert len(errors) == 10
    assert all("connect" in e for e in errors), errors
