"""CPU instructions a request costs the whole server, counted by valgrind: no noise.

On a shared VM whose speed swings by half within a minute, two runs of the same
code differ by more than most changes do. An instruction count does not: keel
serve runs under callgrind, requests are sent one at a time on one keep-alive
connection (so every request takes the same path, batch of one, whatever the
timing), every protocol is warmed up, then per protocol the counters are zeroed
and dumped after ``requests`` more. With ``--concurrency N`` the requests go out on N
connections at once instead (bench/loadgen.py), so batches fill as they do at
saturation and the count is that of the saturated path, per-batch work shared.
What it leaves out is what instructions do
not show: cache misses and system calls' time in the kernel, which ``strace -c``
counts apart. Work done once a second (the connection sweep, the alias watch)
weighs about fifty times more per request than natively, on both sides alike.

    .venv/bin/python bench/instructions.py --registry DIR breast-cancer@production
    .venv/bin/python bench/instructions.py --registry DIR breast-cancer@production --concurrency 64

Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import payloads
from loadgen import LoadSpec, run_load
from models import model_files
from payloads import Payload
from servers import free_port

VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
CALLGRIND_CONTROL = shutil.which("callgrind_control") or "/usr/bin/callgrind_control"
# Under valgrind the server starts about fifty times slower than natively.
START_TIMEOUT_S = 900.0
WARM_UP_REQUESTS = 1000
# Everything runs about fifty times slower under valgrind: without this a model fast
# enough natively would be judged too slow for the event loop and measured on threads.
SLOW_MACHINE = {
    "KEEL_BATCHING__INLINE_BELOW_US": "100000",
    # The alias watch reads the registry every few seconds: per request, under valgrind,
    # it weighs more than most changes to the request path. Off on both sides.
    "KEEL_SERVER__WATCH_INTERVAL_S": "0",
}


def instructions_per_request(
    registry: Path,
    ref: str,
    bodies: list[Payload],
    env: dict[str, str],
    scratch: Path,
    requests: int,
    concurrency: int = 1,
) -> dict[str, float]:
    """Instructions per request of ``keel serve ref``, for each payload, on ``env``'s source.

    ``concurrency`` 1 sends one request at a time; more sends on that many connections.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out = scratch / "callgrind.out"
    log = (scratch / "server.log").open("wb")
    argv = [VALGRIND, "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "keel", "serve", ref, "--registry", str(registry),
            "--port", str(port)]  # fmt: skip
    environment = {**os.environ, **SLOW_MACHINE, **env}
    server = subprocess.Popen(argv, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        connection = _ready(port, server)
        counts: dict[str, float] = {}
        # Every protocol's warm-up first: what a server does once (a monitor's first
        # window, the collector's first full pass) must not land in whichever protocol
        # happens to be counted first.
        for body in bodies:
            _send(connection, body, WARM_UP_REQUESTS)
        for body in bodies:
            _control(server.pid, "--zero")
            if concurrency == 1:
                _send(connection, body, requests)
            else:
                _send_at_once(port, body, requests, concurrency)
            dump = scratch / f"callgrind.{body.protocol}"
            _control(server.pid, f"--dump={body.protocol}")
            counts[body.protocol] = round(_latest_total(out, dump) / requests)
        connection.close()
        return counts
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _ready(port: int, server: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"keel serve under valgrind exited with {server.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("GET", "/v2/health/ready")
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                return connection
        except OSError:
            pass
        connection.close()
        time.sleep(1.0)
    raise RuntimeError(f"keel serve under valgrind was not ready in {START_TIMEOUT_S:.0f} s")


def _send(connection: http.client.HTTPConnection, body: Payload, count: int) -> None:
    for _ in range(count):
        connection.request("POST", body.path, body.body, dict(body.headers))
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{body.protocol}: HTTP {answer.status}")


def _send_at_once(port: int, body: Payload, count: int, connections: int) -> None:
    spec = LoadSpec(
        url=f"http://127.0.0.1:{port}{body.path}",
        body=body.body,
        headers=body.headers,
        connections=connections,
        duration_s=START_TIMEOUT_S,
        warmup_s=0.0,
        max_requests=count,
    )
    result = run_load(spec)
    if result.status != {"200": count}:
        raise RuntimeError(f"{body.protocol}: answers {result.status}, {count} expected as 200")


def _control(pid: int, action: str) -> None:
    subprocess.run([CALLGRIND_CONTROL, action, str(pid)], check=True, capture_output=True)


def _latest_total(out: Path, dump: Path) -> int:
    """The instruction total of the dump just written (callgrind numbers its dumps)."""
    dumps = sorted(out.parent.glob(f"{out.name}.*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump beside {out}")
    latest = dumps[-1]
    latest.rename(dump)
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dump}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ref", help="NAME@ALIAS to serve")
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="connections sending at once (1: one request at a time)",
    )
    args = parser.parse_args()
    metadata = model_files(args.registry, args.ref).metadata
    bodies = [payloads.records(metadata), payloads.v2_json(metadata), payloads.v2_binary(metadata)]
    with tempfile.TemporaryDirectory(prefix="keel-instructions-") as scratch:
        counts: dict[str, Any] = instructions_per_request(
            args.registry, args.ref, bodies, {}, Path(scratch), args.requests, args.concurrency
        )
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
