"""The folder a supervisor and its workers share: what each worker needs, and who is ready.

``keel serve --workers N`` makes one private folder (mode 0700, under the
temporary folder) holding:

- ``spec.json``: what every worker serves, with which settings, on which
  inherited socket; written once by the supervisor before any worker starts;
- ``worker-K.sock``: worker K's private socket, on which it warms itself up and
  tells the other workers its figures (``/-/worker/state``);
- ``ready-K``: there while worker K is ready, made by it, removed by it when it
  starts to drain and by the supervisor when it exits;
- ``started``: made by the first worker to see every ``ready-K`` at once: from
  then on a worker restarting does not take the whole server out of service;
- ``status.json``: the supervisor's count of each worker's restarts;
- ``repository.jsonl``: every repository load and unload, so that a worker
  started again serves what the others serve;
- ``counters.json``: where the summed counters of ``/metrics`` stand.

Files, not messages, because each one is read far more often than it changes
and must outlive the process that wrote it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from keel.shared_files import exclusive, write_whole

STATE_PATH = "/-/worker/state"
"""Where a worker answers, on its private socket only, with its own figures."""


class WorkerSpec(BaseModel):
    """What the supervisor tells every worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int
    refs: list[str]
    # The settings as JSON, secrets included: the folder is readable by its owner alone.
    settings: dict[str, Any]
    listener_fds: list[int]
    supervisor_pid: int


class RunDir:
    """One server's shared folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls) -> RunDir:
        return cls(Path(tempfile.mkdtemp(prefix="keel-workers-")))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def write_spec(self, spec: WorkerSpec) -> None:
        write_whole(self.path / "spec.json", spec.model_dump_json().encode())

    def read_spec(self) -> WorkerSpec:
        return WorkerSpec.model_validate_json((self.path / "spec.json").read_bytes())

    def socket_path(self, index: int) -> str:
        return str(self.path / f"worker-{index}.sock")

    def mark_ready(self, index: int, ready: bool) -> None:
        marker = self.path / f"ready-{index}"
        if ready:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def ready_workers(self, count: int) -> list[int]:
        return [k for k in range(count) if (self.path / f"ready-{k}").exists()]

    def has_started(self) -> bool:
        """Whether the gate is open (``started``), without trying to open it."""
        return (self.path / "started").exists()

    def started(self, count: int) -> bool:
        """Whether every worker has been ready at once, at some point (then for good)."""
        if self.has_started():
            return True
        started = self.path / "started"
        if len(self.ready_workers(count)) < count:
            return False
        started.touch()
        return True

    def leave(self, index: int) -> None:
        """Worker ``index`` is gone for good; the last to leave removes the folder.

        For workers whose supervisor died without removing it: the folder holds the
        settings, admin token included, and must not outlive the server.
        """
        Path(self.socket_path(index)).unlink(missing_ok=True)
        self.mark_ready(index, False)
        if not any(self.path.glob("worker-*.sock")):
            self.remove()

    @contextlib.contextmanager
    def continuation(self) -> Iterator[dict[str, Any]]:
        """The summed counters' continuation (``merging.continued``), one worker at a time:
        whichever worker a scrape reaches continues from what the last one exposed."""
        path = self.path / "counters.json"
        with exclusive(self.path / "counters.lock"):
            try:
                memory: dict[str, Any] = orjson.loads(path.read_bytes())
            except (OSError, ValueError):
                memory = {}
            yield memory
            write_whole(path, orjson.dumps(memory))

    def record_repository_call(self, action: str, name: str, selector: str | None) -> None:
        """Note a repository load or unload for workers started after it: the latest call
        for each model, which is all a worker needs to serve what the others serve."""
        with exclusive(self.path / "repository.lock"):
            calls = [call for call in self.repository_calls() if call["name"] != name]
            calls.append({"action": action, "name": name, "selector": selector})
            lines = b"".join(orjson.dumps(call) + b"\n" for call in calls)
            write_whole(self.path / "repository.jsonl", lines)

    def repository_calls(self) -> list[dict[str, str | None]]:
        """The latest repository load or unload of each model since the server started."""
        try:
            lines = (self.path / "repository.jsonl").read_bytes().splitlines()
        except FileNotFoundError:
            return []
        calls = []
        for line in lines:
            try:
                calls.append(orjson.loads(line))
            except ValueError:
                continue  # never written whole: the file is replaced, not appended to
        return calls

    def write_restarts(self, restarts: list[int]) -> None:
        write_whole(self.path / "status.json", orjson.dumps({"restarts": restarts}))

    def restarts(self, count: int) -> list[int]:
        try:
            stored = orjson.loads((self.path / "status.json").read_bytes())["restarts"]
        except (OSError, ValueError, KeyError, TypeError):
            return [0] * count
        return [int(stored[k]) if k < len(stored) else 0 for k in range(count)]
