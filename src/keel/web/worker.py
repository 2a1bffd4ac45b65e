"""One worker process of ``keel serve --workers N``: the whole server, on the supervisor's socket.

Started by the supervisor as ``python -m keel.web.worker RUN_DIR INDEX``; what
it serves, with which settings, comes from the run folder's ``spec.json``
(``run_dir``), never from its own environment, so every worker serves the same.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from keel.digest_memo import DigestMemo
from keel.errors import KeelError
from keel.registry import Registry
from keel.settings import Settings
from keel.web.peers import Peers
from keel.web.run_dir import RunDir
from keel.web.server import serve

# What a worker that cannot start exits with; the supervisor restarts it with backoff.
EXIT_CANNOT_START = 3


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m keel.web.worker RUN_DIR INDEX", file=sys.stderr)
        return 2
    run_dir = RunDir(Path(argv[0]))
    index = int(argv[1])
    try:
        spec = run_dir.read_spec()
        settings = Settings.model_validate(spec.settings)
        cache = Path(settings.cache_dir) if settings.cache_dir else None
        # At the server's start, files one worker hashed are not hashed again by the
        # others (``digest_memo``); after it, each worker hashes what it loads.
        memo = DigestMemo(run_dir.path / "digests", lambda: not run_dir.has_started())
        registry = Registry(settings.registry, cache_dir=cache, digest_memo=memo)
    except (OSError, ValueError, KeelError) as exc:
        print(f"keel worker {index} cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    listeners = [socket.socket(fileno=fd) for fd in spec.listener_fds]
    peers = Peers(run_dir, index, spec.workers)
    try:
        serve(
            spec.refs,
            settings,
            registry,
            listeners=listeners,
            peers=peers,
            supervisor_pid=spec.supervisor_pid,
        )
    finally:
        if os.getppid() != spec.supervisor_pid:
            run_dir.leave(index)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
