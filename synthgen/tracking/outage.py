"""Tracking that survives an outage of the MLflow store: failed calls are kept and retried.

A long fit must not die because the tracking server blinked. While a tracker tolerates
outages (:meth:`synthgen.tracking.MlflowTracker.tolerant`, entered by the train stage and by
the tracking callback for the length of a fit), each of its logging calls goes through a
:class:`PendingCalls` queue: sent at once when the store answers; on a failure logged once
as a warning, kept in order, and retried at a later call - first after ``retry_seconds``,
then after twice as long each time, up to ``max_retry_seconds`` - so an unreachable server
costs a training run one timeout per retry, not one per epoch. At the end
(:meth:`PendingCalls.catch_up`) the queue is retried ``final_attempts`` times with short
pauses; what still cannot be sent is reported, and the tracker marks the run incomplete.

Example::

    pending = PendingCalls()
    pending.call("metrics of epoch 3", lambda: client.log_batch(run_id, metrics=items))
    ...
    if not pending.catch_up():
        ...  # tag the run synthgen.tracking=incomplete
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: The run tag that says whether every tracking call of the run reached the store.
TRACKING_TAG = "synthgen.tracking"


def first_line(exc: BaseException) -> str:
    """An exception as one short line, for a warning."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


class PendingCalls:
    """Tracking calls kept in order while the store cannot be reached, retried with backoff.

    Args:
        retry_seconds: wait after the first failure before trying again. Default 15.
        max_retry_seconds: the wait doubles per failed retry up to this. Default 300.
        final_attempts: tries of :meth:`catch_up`. Default 3.
        final_pause: seconds before the second try of :meth:`catch_up`, doubled before
            each further one. Default 2.
        clock: monotonic seconds; default ``time.monotonic``.
        sleep: how :meth:`catch_up` pauses; default ``time.sleep``.
    """

    def __init__(self, retry_seconds: float = 15.0, max_retry_seconds: float = 300.0, final_attempts: int = 3,
                 final_pause: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep):
        self.retry_seconds, self.max_retry_seconds = retry_seconds, max_retry_seconds
        self.final_attempts, self.final_pause = final_attempts, final_pause
        self.clock, self.sleep = clock, sleep
        self.queue: deque[tuple[str, Callable[[], Any]]] = deque()
        self.failures = 0  # failed attempts since the store last answered
        self.sent_late = 0  # calls sent after having waited in the queue
        self.next_try = 0.0

    def __len__(self) -> int:
        return len(self.queue)

    def call(self, what: str, send: Callable[[], Any]) -> None:
        """Queue ``send`` (described as ``what`` in messages) and send what is due, in order."""
        self.queue.append((what, send))
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Send the queued calls in order, unless a retry is not due yet (``force``: now).

        Returns:
            Whether the queue is empty.
        """
        if not self.queue:
            return True
        if not force and self.clock() < self.next_try:
            return False
        while self.queue:
            what, send = self.queue[0]
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - any failure of the store is an outage here
                self._failed(what, exc)
                return False
            self.queue.popleft()
            if self.failures:
                self.sent_late += 1
        if self.failures:
            log.info("tracking: the store answers again; %d held-back call(s) sent", self.sent_late)
            self.failures, self.sent_late = 0, 0
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        wait = min(self.max_retry_seconds, self.retry_seconds * 2 ** self.failures)
        if not self.failures:
            log.warning("tracking: %s failed (%s); training goes on, the call is kept and retried in %.0fs",
                        what, first_line(exc), wait)
        else:
            log.info("tracking: still failing (%s); %d call(s) held back, next try in %.0fs",
                     first_line(exc), len(self.queue), wait)
        self.failures += 1
        self.next_try = self.clock() + wait

    def catch_up(self) -> bool:
        """Send everything still queued: up to ``final_attempts`` tries, pausing between them.

        Returns:
            Whether everything was sent; a warning counts what was not.
        """
        if not self.queue:
            return True
        for attempt in range(self.final_attempts):
            if attempt:
                self.sleep(self.final_pause * 2 ** (attempt - 1))
            if self.flush(force=True):
                return True
        log.warning("tracking: %d call(s) could not be sent after %d tries (first: %s); the run is incomplete",
                    len(self.queue), self.final_attempts, self.queue[0][0])
        return False
