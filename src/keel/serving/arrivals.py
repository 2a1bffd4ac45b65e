"""Requests read off their sockets whose handlers have not started yet.

keel's HTTP server reads every readable socket in one pass of the event loop and
starts a task per request; the tasks run one after the other in the next pass.
An inline batch run in that pass can only gather requests whose tasks still have
to run: when none are left, waiting for a callback in a later pass buys no
company, only two more loop passes (and their ``epoll_wait``) for every request.
The batcher reads this count to run at once instead.
"""

from __future__ import annotations


class Arrivals:
    """How many requests the server has read whose answering task has not started."""

    __slots__ = ("unstarted",)

    def __init__(self) -> None:
        self.unstarted = 0

    def expected(self) -> bool:
        """Whether another request may still join a batch in this pass of the loop."""
        return self.unstarted > 0
