"""A bound on how many page runs of one server process do their data work at once, first come first served.

Why: a replica is one Python process whose script threads share the GIL. With 50 sessions starting at
once, 50 script threads are runnable, each gets the GIL for 5 ms in turn, and the event-loop thread
that sends every session's deltas waits behind all of them: the first element of most pages reaches
the browser together with the last (bench/RESULTS.md, protocol load). Past the gate only a few runs
compete; the others sleep on a condition, so the event loop and every page's title go out at once.

Pure threading: the caller passes ``checkpoint``, called between waits, which raises to abandon the
wait (the page's run was stopped or superseded). A waiter that leaves for any reason takes its place
in the queue with it, and a holder gives its slot back however its block ends.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class RunGate:
    """At most ``limit`` holders at once; waiters enter in the order they arrived."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs at least one slot, got {limit}")
        self.limit = limit
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._holders = 0

    @property
    def holders(self) -> int:
        with self._cond:
            return self._holders

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    @contextmanager
    def slot(self, checkpoint: Callable[[], None] = lambda: None, poll_s: float = 0.1) -> Iterator[None]:
        """Hold one slot for the block. While waiting, ``checkpoint()`` runs before each wait of at
        most ``poll_s`` seconds; whatever it raises ends the wait and leaves the queue."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        try:
            while True:
                with self._cond:
                    # FIFO: only the head may take a free slot, so a page that arrived first is served first
                    # (the p95 of a burst is the last of the burst, not an unlucky waiter passed over).
                    if self._holders < self.limit and self._queue[0] is ticket:
                        self._queue.popleft()
                        self._holders += 1
                        self._cond.notify_all()  # the next in line may take another free slot
                        break
                checkpoint()
                with self._cond:
                    if not (self._holders < self.limit and self._queue[0] is ticket):
                        self._cond.wait(poll_s)
        except BaseException:
            with self._cond:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                self._cond.notify_all()  # the head may have changed
            raise
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                self._cond.notify_all()


_GATES: dict[int, RunGate] = {}
_GATES_LOCK = threading.Lock()


def process_gate(limit: int) -> RunGate:
    """This process's gate of ``limit`` slots: every session's page runs share it."""
    with _GATES_LOCK:
        gate = _GATES.get(limit)
        if gate is None:
            gate = _GATES[limit] = RunGate(limit)
        return gate
