"""Dynamic batching: requests from many threads, answered by one worker thread.

A model runs faster on a batch of 16 images than on 16 single images, and torch
already uses every core for one batch; so the server runs inference on one worker
thread. Each call to :meth:`Batcher.submit` queues one item and returns a Future.
The worker takes the oldest item, then gathers more items with the same key (same
model and beam width) until it has ``max_batch`` of them or ``wait_ms`` have passed
since it took the first, runs them together, and answers each Future with its own
result. Items with another key wait for the next round, in arrival order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: Future = field(default_factory=Future)


class Batcher:
    """``run(key, payloads) -> results`` (one result per payload, same order) on one thread."""

    def __init__(self, run: RunBatch, max_batch: int = 16, wait_ms: float = 10.0):
        if max_batch < 1 or wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and wait_ms >= 0")
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_ms / 1000.0
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._held: list[_Item] = []  # taken from the queue but of another key
        self._thread: threading.Thread | None = None
        # Sizes of the last batches run (bounded: a server runs for months), for statistics.
        self.batch_sizes: deque[int] = deque(maxlen=10_000)

    def start(self) -> Batcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="texlens-batcher",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the items already queued, then end the worker thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, key: Hashable, payload: Any) -> Future:
        if self._thread is None:
            raise RuntimeError("the batcher is not running (call start())")
        item = _Item(key, payload)
        self._queue.put(item)
        return item.future

    def _next(self, timeout: float | None) -> _Item | None:
        """The next item: held ones first (older), then the queue; raises queue.Empty."""
        return self._held.pop(0) if self._held else self._queue.get(timeout=timeout)

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, others, stopping = [first], [], False
        deadline = time.monotonic() + self.wait_s
        # Held items of this key first: they arrived before anything still in the queue.
        for item in list(self._held):
            if len(batch) < self.max_batch and item.key == first.key:
                batch.append(item)
                self._held.remove(item)
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stopping = True
                break
            (batch if item.key == first.key else others).append(item)
        self._held += others
        return batch, stopping

    def _loop(self) -> None:
        stopping = False
        while True:
            if stopping and not self._held:
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._next(None)
            if first is None:
                stopping = True
                continue
            batch, stop_seen = self._gather(first)
            stopping = stopping or stop_seen
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        live = [it for it in batch if it.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batch_sizes.append(len(live))
        try:
            results = list(self.run(live[0].key, [it.payload for it in live]))
            if len(results) != len(live):
                raise RuntimeError(f"run returned {len(results)} results for "
                                   f"{len(live)} items")
        except BaseException as e:  # handed to every waiting request, not lost in a thread
            for it in live:
                it.future.set_exception(e)
            return
        for it, res in zip(live, results, strict=True):
            it.future.set_result(res)
