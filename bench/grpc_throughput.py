"""gRPC: keel's gRPC beside keel's REST v2 binary, and against MLServer's gRPC, in one run.

breast-cancer (the model costs microseconds; serving is everything), single-row
``ModelInfer`` calls. Each server runs pinned to core 0 and the load generator to
core 1, as bench/run.py does: one core of serving each. gRPC load comes from
``h2load`` (Debian's nghttp2-client: C, HTTP/2, the same framed request bytes on
64 streams, 8 connections x 8); REST from ``wrk`` (64 connections). h2load
counts HTTP statuses, and a gRPC error is an HTTP 200 with a status in its
trailers, so every run is also checked by the bytes it got: each answer's
length times the answers, which an error answer (no message) would not match.

Per round, for keel and for MLServer (order rotating):
- saturation: requests a second, the server's CPU per request, the generator's;
- alone: one call at a time, p50 and p99;
and then both at half of MLServer's saturation rate (a rate both keep up with):
p50 and p99. keel's REST v2 binary is measured beside its gRPC, to give what the
gRPC stack costs per request. The stacks a gRPC edge could stand on are measured
once, with a fixed answer and no model (``--floors``).

MLServer (``bench/mlserver/requirements.txt``, in an environment of its own under
``~/.cache/keel-bench``, never keel's) serves the same ONNX file through
``bench/mlserver/onnx_model.py``, with its default settings.

    apt-get install nghttp2-client wrk
    .venv/bin/python bench/grpc_throughput.py --registry DIR [--rounds 3] [--seconds 10]

Writes ``bench/results/grpc/<date>.json`` and the gRPC section of docs/benchmarks.md.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import machine
import numpy as np
import payloads
import report
from models import SMALL, model_files
from sections import keep_run, section_parser
from grpc_floor import ANSWER as FLOOR_ANSWER
from grpc_floor import STACKS
from servers import BENCH, LOAD_CORE, SERVER_CORE, TASKSET, ServerProcess, free_port
from tritonclient.grpc import service_pb2, service_pb2_grpc
from workers import tree_cpu_s

REPO = BENCH.parent
MLSERVER_REQUIREMENTS = BENCH / "mlserver" / "requirements.txt"
GRPCLIB_REQUIREMENTS = BENCH / "grpclib" / "requirements.txt"
CONNECTIONS, STREAMS = 8, 8
LONE_CALLS = 2000
WARMUP_S = 2.0
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ("-H", "content-type: application/grpc", "-H", "te: trailers")


def grpc_request(metadata: Any) -> Any:
    """One row of the model's first golden input as a ModelInferRequest, tensor data raw."""
    row = payloads._input_row(metadata)[1]
    request = service_pb2.ModelInferRequest(model_name=metadata.name)
    request.inputs.add(name="input", datatype="FP32", shape=list(row.shape))
    request.raw_input_contents.append(np.ascontiguousarray(row, dtype="<f4").tobytes())
    return request


def framed(message: Any) -> bytes:
    """A gRPC message as it goes on the wire: uncompressed flag, length, bytes."""
    body = message.SerializeToString()
    return b"\0" + struct.pack(">I", len(body)) + body


def answer_bytes(address: str, request: Any) -> int:
    """What one answer's DATA frames hold, from a real call that must succeed."""
    with grpc.insecure_channel(address) as channel:
        answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    if len(answer.outputs) != 2:
        raise RuntimeError(f"{address} answered {answer}")
    return 5 + len(answer.SerializeToString())


def h2load(address: str, body: Path, answer_size: int, scratch: Path, *, seconds: float = 0,
           calls: int = 0, connections: int = CONNECTIONS, streams: int = STREAMS,
           rate: float = 0) -> dict[str, Any]:  # fmt: skip
    """One h2load run on the load core: req/s, latency percentiles, its own CPU µs a call."""
    log = scratch / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends to it
    argv = [TASKSET, "-c", str(LOAD_CORE), shutil.which("h2load") or "h2load",
            f"-c{connections}", f"-m{streams}", "-d", str(body), *GRPC_HEADERS,
            "--log-file", str(log)]  # fmt: skip
    argv += ["-D", f"{seconds:g}"] if seconds else ["-n", str(calls)]
    if rate:
        argv += ["--rps", f"{rate / connections:.3f}"]
    process = subprocess.Popen([*argv, f"http://{address}{GRPC_PATH}"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    done = int(_found(r"(\d+) done", output))
    data = int(_found(r"\((\d+)\) data", output))
    if status != 0 or done == 0 or int(_found(r"(\d+) succeeded", output)) != done:
        raise RuntimeError(f"h2load against {address} failed:\n{output}")
    # Counted as the HTTP statuses are (a call finishing as the clock stops counts here
    # and not in ``done``), so the two are compared.
    answered = int(_found(r"status codes: (\d+) 2xx", output))
    if data != answered * answer_size:
        raise RuntimeError(
            f"h2load against {address}: {data} bytes of answers for {answered} calls, not "
            f"{answer_size} each: some calls were refused\n{output}"
        )
    durations = np.array([int(line.split()[2]) for line in log.read_text().splitlines()])
    return {
        "calls": done,
        "rps": float(_found(r"finished in [\d.]+m?s, ([\d.]+) req/s", output)),
        "p50_ms": round(float(np.percentile(durations, 50)) / 1000, 3),
        "p99_ms": round(float(np.percentile(durations, 99)) / 1000, 3),
        "h2load_cpu_us": (usage.ru_utime + usage.ru_stime) / done * 1e6,
    }


def wrk(url: str, payload: payloads.Payload, seconds: float, connections: int,
        scratch: Path) -> dict[str, Any]:  # fmt: skip
    """One wrk run on the load core (REST v2 binary): req/s and latency percentiles."""
    body = scratch / "v2.body"
    body.write_bytes(payload.body)
    script = scratch / "body.lua"
    script.write_text('local f = assert(io.open(os.getenv("KEEL_BENCH_BODY"), "rb"))\n'
                      'wrk.method = "POST"\nwrk.body = f:read("*all")\nf:close()\n')  # fmt: skip
    headers = [arg for name, value in payload.headers for arg in ("-H", f"{name}: {value}")]
    argv = [TASKSET, "-c", str(LOAD_CORE), shutil.which("wrk") or "wrk", "-t1",
            f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), *headers,
            url + payload.path]  # fmt: skip
    output = subprocess.run(argv, capture_output=True, text=True, check=True,
                            env={**os.environ, "KEEL_BENCH_BODY": str(body)}).stdout  # fmt: skip
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk against {url} did not get clean answers:\n{output}")
    return {
        "calls": int(_found(r"(\d+) requests in", output)),
        "rps": float(_found(r"Requests/sec:\s+([\d.]+)", output)),
        "p50_ms": _wrk_latency(output, "50%"),
        "p99_ms": _wrk_latency(output, "99%"),
    }


def _wrk_latency(output: str, percentile: str) -> float:
    match = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)\b", output)
    if match is None:
        raise RuntimeError(f"wrk's output has no {percentile}:\n{output}")
    return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match[2]]


def _found(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in:\n{output}")
    return match[1]


class Server:
    """A server under test: its process, its gRPC address, the size of its answer."""

    def __init__(self, label: str, process: ServerProcess, grpc_port: int) -> None:
        self.label = label
        self.process = process
        self.address = f"127.0.0.1:{grpc_port}"
        self.answer_size = 0


def _pinned(label: str, argv: list[str], port: int, log: Path, env: dict[str, str],
            cwd: Path | None = None) -> ServerProcess:  # fmt: skip
    process = subprocess.Popen([TASKSET, "-c", str(SERVER_CORE), *argv], stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, env={**os.environ, **env},
                               cwd=cwd)  # fmt: skip
    server = ServerProcess(label, process, port, "/v2/health/ready", log, time.perf_counter())
    server.wait_ready()
    return server


def start_keel(registry: Path, scratch: Path) -> Server:
    port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "keel", "serve", SMALL, "--registry", str(registry),
            "--port", str(port), "--grpc-port", str(grpc_port)]  # fmt: skip
    env = {"KEEL_SERVER__WATCH_INTERVAL_S": "0", "KEEL_CACHE_DIR": str(scratch / "cache")}
    return Server("keel", _pinned("keel", argv, port, scratch / "keel.log", env), grpc_port)


def own_env(requirements: Path) -> Path:
    """A virtual environment of its own for a peer, made once per requirements file; its python."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / "keel-bench" / f"{requirements.parent.name}-{digest}"
    python = folder / "bin" / "python"
    if not (folder / "installed").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                        "-r", str(requirements)], check=True)  # fmt: skip
        (folder / "installed").touch()
    return python


def start_mlserver(python: Path, onnx: Path, scratch: Path) -> Server:
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    folder = scratch / "mlserver"
    model = folder / "breast-cancer"
    model.mkdir(parents=True, exist_ok=True)
    shutil.copy(BENCH / "mlserver" / "onnx_model.py", model / "onnx_model.py")
    (model / "model-settings.json").write_text(json.dumps({
        "name": "breast-cancer", "implementation": "onnx_model.OnnxModel",
        "parameters": {"uri": str(onnx)},
    }))  # fmt: skip
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": metrics_port,
    }))  # fmt: skip
    argv = [str(python.parent / "mlserver"), "start", str(folder)]
    env = {"PYTHONPATH": str(model)}
    process = _pinned("mlserver", argv, port, scratch / "mlserver.log", env, cwd=folder)
    return Server("mlserver", process, grpc_port)


def measure(server: Server, body: Path, seconds: float, scratch: Path) -> dict[str, Any]:
    """Saturation and alone, gRPC."""
    h2load(server.address, body, server.answer_size, scratch, seconds=WARMUP_S)
    cpu_before = tree_cpu_s(server.process.pid)
    saturated = h2load(server.address, body, server.answer_size, scratch, seconds=seconds)
    saturated["server_cpu_us"] = (tree_cpu_s(server.process.pid) - cpu_before) / saturated[
        "calls"
    ] * 1e6
    alone = h2load(server.address, body, server.answer_size, scratch, calls=LONE_CALLS,
                   connections=1, streams=1)  # fmt: skip
    return {"saturated": saturated, "alone": alone}


def measure_rest(server: Server, payload: payloads.Payload, seconds: float,
                 scratch: Path) -> dict[str, Any]:  # fmt: skip
    url = server.process.url("")
    wrk(url, payload, WARMUP_S, 64, scratch)
    cpu_before = tree_cpu_s(server.process.pid)
    saturated = wrk(url, payload, seconds, 64, scratch)
    saturated["server_cpu_us"] = (tree_cpu_s(server.process.pid) - cpu_before) / saturated[
        "calls"
    ] * 1e6
    alone = wrk(url, payload, seconds / 2, 1, scratch)
    return {"saturated": saturated, "alone": alone}


def run_round(index: int, servers: dict[str, Server], body: Path, payload: payloads.Payload,
              seconds: float, scratch: Path) -> dict[str, Any]:  # fmt: skip
    order = ["keel", "mlserver"] if index % 2 == 0 else ["mlserver", "keel"]
    figures: dict[str, Any] = {}
    for label in order:
        figures[f"{label} grpc"] = measure(servers[label], body, seconds, scratch)
        if label == "keel":
            figures["keel rest v2-binary"] = measure_rest(servers[label], payload, seconds, scratch)
    rate = figures["mlserver grpc"]["saturated"]["rps"] / 2
    for label in order:
        server = servers[label]
        figures[f"{label} grpc"]["half_rate"] = h2load(
            server.address, body, server.answer_size, scratch, seconds=seconds,
            connections=CONNECTIONS, streams=1, rate=rate,
        )  # fmt: skip
    summary = ", ".join(f"{k} {v['saturated']['rps']:,.0f} req/s" for k, v in figures.items())
    print(f"round {index + 1}: {summary}; half rate {rate:,.0f} req/s", file=sys.stderr)
    return figures


def floors(body: Path, seconds: float, scratch: Path) -> dict[str, Any]:
    """Each stack's fixed answer (bench/grpc_floor.py) at saturation: req/s, CPU µs a call."""
    measured: dict[str, Any] = {}
    for stack in STACKS:
        python = own_env(GRPCLIB_REQUIREMENTS) if stack == "grpclib" else Path(sys.executable)
        port = free_port()
        argv = [TASKSET, "-c", str(SERVER_CORE), str(python), str(BENCH / "grpc_floor.py"),
                "--stack", stack, "--port", str(port)]  # fmt: skip
        log = scratch / f"floor-{stack}.log"
        process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        address = f"127.0.0.1:{port}"
        try:
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
            size = 5 + len(FLOOR_ANSWER)
            h2load(address, body, size, scratch, seconds=WARMUP_S)
            cpu_before = tree_cpu_s(process.pid)
            run = h2load(address, body, size, scratch, seconds=seconds)
            run["server_cpu_us"] = (tree_cpu_s(process.pid) - cpu_before) / run["calls"] * 1e6
            measured[stack] = {key: round(value, 3) for key, value in run.items()}
        finally:
            process.terminate()
            process.wait(10)
        print(f"floor {stack}: {measured[stack]['rps']:,.0f} req/s", file=sys.stderr)
    return measured


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def median(path: tuple[str, ...]) -> float:
        values = []
        for figures in rounds:
            value: Any = figures
            for key in path:
                value = value[key]
            values.append(value)
        return round(statistics.median(values), 3)

    servers: dict[str, Any] = {}
    for label, parts in rounds[0].items():
        servers[label] = {
            part: {key: median((label, part, key)) for key in parts[part]} for part in parts
        }

    def ratios(values: list[float]) -> dict[str, Any]:
        return {"median": round(statistics.median(values), 3),
                "values": [round(v, 3) for v in values]}  # fmt: skip

    keel, peer, rest = "keel grpc", "mlserver grpc", "keel rest v2-binary"
    return {
        "servers": servers,
        "ratios": {
            "keel grpc / mlserver grpc, saturated req/s": ratios(
                [r[keel]["saturated"]["rps"] / r[peer]["saturated"]["rps"] for r in rounds]
            ),
            "keel grpc / keel rest v2-binary, saturated req/s": ratios(
                [r[keel]["saturated"]["rps"] / r[rest]["saturated"]["rps"] for r in rounds]
            ),
            "mlserver p99 / keel p99 at half mlserver's saturation": ratios(
                [r[peer]["half_rate"]["p99_ms"] / r[keel]["half_rate"]["p99_ms"] for r in rounds]
            ),
        },
        # What gRPC costs keel beyond REST, per request, in server CPU.
        "grpc_extra_cpu_us": round(
            servers[keel]["saturated"]["server_cpu_us"] - servers[rest]["saturated"]["server_cpu_us"],
            1,
        ),
        "rounds": rounds,
    }


def main() -> None:
    parser = section_parser(__doc__, "grpc", rounds=3, seconds=10.0)
    parser.add_argument("--floors", action="store_true", help="also each gRPC stack's floor")
    args = parser.parse_args()
    for tool, package in (("h2load", "nghttp2-client"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install {package}")
    started = time.perf_counter()
    small = model_files(args.registry, SMALL)
    request = grpc_request(small.metadata)
    python = own_env(MLSERVER_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="keel-grpc-bench-") as folder:
        scratch = Path(folder)
        body = scratch / "grpc.body"
        body.write_bytes(framed(request))
        servers = {
            "keel": start_keel(args.registry, scratch),
            "mlserver": start_mlserver(python, small.path, scratch),
        }
        try:
            for server in servers.values():
                server.answer_size = answer_bytes(server.address, request)
            stack_floors = floors(body, args.seconds, scratch) if args.floors else None
            rounds = [
                run_round(k, servers, body, payloads.v2_binary(small.metadata), args.seconds,
                          scratch)  # fmt: skip
                for k in range(args.rounds)
            ]
        finally:
            for server in servers.values():
                server.process.stop()
    mlserver_version = subprocess.run(
        [str(python), "-c", "import mlserver; print(mlserver.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    results = {
        "date": datetime.date.today().isoformat(),
        "command": f"python bench/grpc_throughput.py --rounds {args.rounds} "
        f"--seconds {args.seconds:g}",
        "machine": machine.describe(REPO),
        "mlserver": mlserver_version,
        "grpcio": grpc.__version__,
        "seconds": args.seconds,
        **summarise(rounds),
        "floors": stack_floors,
    }
    results["wall_s"] = round(time.perf_counter() - started, 1)
    keep_run(args, results, report.replace_grpc)
    print(json.dumps(results["ratios"], indent=1))


if __name__ == "__main__":
    main()
