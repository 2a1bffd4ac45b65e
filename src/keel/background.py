"""Threads that do background work beside the request path, at the lowest CPU priority.

On a server with one or two cores, a busy background thread (the prediction-log
writer, a shadow candidate's model) takes CPU time from the event loop that
answers requests, and a request that arrives then waits. At nice 19 the kernel
gives such a thread the CPU only when the serving threads do not want it, so
background work fills idle time instead of adding to the primary's latency.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("keel")

LOWEST_PRIORITY = 19


def lower_this_thread(niceness: int = LOWEST_PRIORITY) -> None:
    """Give the calling thread the scheduling priority ``niceness`` (a thread-pool initializer).

    The lowest, 19, unless a thread must keep up with the requests (see the
    prediction-log writer).
    """
    try:
        # Linux schedules threads one by one: PRIO_PROCESS with a thread id changes
        # that thread alone. Lowering one's priority needs no privilege.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as exc:  # not Linux, or a sandbox that forbids it: run at normal priority
        log.debug("could not lower the priority of %s: %s", threading.current_thread().name, exc)
