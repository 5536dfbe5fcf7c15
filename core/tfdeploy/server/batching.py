"""Merging concurrent requests into one model call.

Each loaded model version has a :class:`Batcher`: requests already checked against their
signature (so a bad instance never reaches it) are queued; worker threads take the request at
the head of the queue together with the queued requests that can share its model call (same
signature, same per-instance shapes), up to ``max_batch_size`` instances, waiting at most
``batch_timeout`` for more to arrive, and call the model once. If the merged call fails, or its
outputs cannot be split back per request, each request is run alone, so one request's failure
is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfdeploy.errors import ServableNotFoundError, ServerBusyError
from tfdeploy.predict import wire
from tfdeploy.server.metrics import Metrics

Outputs = dict[str, np.ndarray]
#: Runs a signature on inputs, fetching the named outputs (all of them for ``None``).
RunFn = Callable[[str, Mapping[str, np.ndarray], "tuple[str, ...] | None"], Outputs]


@dataclass(frozen=True)
class BatchingOptions:
    """How requests are merged: TF Serving's batching parameters."""

    #: Most instances in one model call.
    max_batch_size: int = 64
    #: How long the first request of a batch waits for others (0: take what is already queued).
    batch_timeout_micros: int = 0
    #: Most requests waiting per model version; beyond it requests get 503.
    max_enqueued_batches: int = 1024
    #: Worker threads calling the model per version.
    num_batch_threads: int = 1


@dataclass
class _Item:
    signature: str
    inputs: Mapping[str, np.ndarray]
    size: int | None  # instances; None: cannot be merged (columnar request)
    key: Hashable
    outputs: tuple[str, ...] | None
    # Thread callers wait on a concurrent future; event-loop callers on an asyncio future of
    # their loop, answered once per batch and loop rather than once per request.
    future: Future[Outputs] | asyncio.Future[Outputs] = field(default_factory=Future)
    loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Whether the request still wants an answer (its caller may have gone)."""
        if self.loop is None:
            assert isinstance(self.future, Future)
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()


def _deliver(results: list[tuple[Any, Outputs | None, BaseException | None]]) -> None:
    for future, outputs, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outputs)


class ClosedError(ServableNotFoundError):
    """The batcher's model version was unloaded; the caller resolves the version again."""


def _unloaded(
    signature: str, inputs: Mapping[str, np.ndarray], outputs: tuple[str, ...] | None
) -> Outputs:
    raise ClosedError("the model version was unloaded")


class Batcher:
    """A queue of prepared requests for one model version, and the threads that run them."""

    def __init__(
        self,
        run: RunFn,
        options: BatchingOptions,
        *,
        name: str = "model",
        metrics: Metrics | None = None,
    ) -> None:
        self._run_fn = run
        self.options = options
        self.name = name
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"tfdeploy-batch-{name}-{i}", daemon=True)
            for i in range(max(1, options.num_batch_threads))
        ]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Requests waiting in the queue."""
        return len(self._queue)

    def submit(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        size: int | None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> Future[Outputs] | asyncio.Future[Outputs]:
        """Queue a request; its future gets the outputs for exactly its instances.

        ``size`` is the number of instances (dimension 0 of every input), or ``None`` for a
        request that must run alone. ``outputs`` names the outputs to fetch (all by default).
        With ``loop`` the future is an asyncio future of that loop (await it there); otherwise
        a :class:`concurrent.futures.Future`.
        """
        key: Hashable = (
            signature,
            outputs,
            tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())),
        )
        if loop is None:
            item = _Item(signature, inputs, size, key, outputs)
        else:
            item = _Item(signature, inputs, size, key, outputs, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise ClosedError(f"model {self.name} was unloaded")
            if len(self._queue) >= self.options.max_enqueued_batches:
                raise ServerBusyError(
                    f"the server is busy: {len(self._queue)} requests are waiting for {self.name}",
                    hint="retry shortly, or start the server with a larger --max-enqueued",
                )
            self._queue.append(item)
            self._cond.notify()
        return item.future

    def release(self) -> None:
        """Forget the model function (after :meth:`close`), so nothing here keeps it alive."""
        self._run_fn = _unloaded

    def close(self) -> None:
        """Refuse new requests, finish the queued ones, and stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    # --- worker side ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _take(self) -> list[_Item] | None:
        opts = self.options
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch = [first] if first.start() else []
            if first.size is None or not batch:
                return batch
            total = first.size
            deadline = time.monotonic() + opts.batch_timeout_micros / 1e6
            while total < opts.max_batch_size:
                if self._queue:
                    nxt = self._queue[0]
                    if nxt.key != first.key or nxt.size is None:
                        break
                    if total + nxt.size > opts.max_batch_size:
                        break
                    self._queue.popleft()
                    if nxt.start():
                        batch.append(nxt)
                        total += nxt.size
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            if self._queue:
                self._cond.notify()  # another worker may start on what is left
            return batch

    def _call(self, item: _Item, inputs: Mapping[str, np.ndarray]) -> Outputs:
        if self._metrics is not None:
            n = len(next(iter(inputs.values()))) if item.size is not None else 1
            self._metrics.batch_size.observe(n, self.name)
            self._metrics.model_calls.inc(self.name)
        return self._run_fn(item.signature, inputs, item.outputs)

    def _compute_alone(self, item: _Item) -> tuple[Outputs | None, BaseException | None]:
        try:
            if item.size is None:
                return self._call(item, item.inputs), None
            outputs = wire.run_in_batches(
                lambda inputs: self._call(item, inputs),
                item.inputs,
                item.size,
                self.options.max_batch_size,
            )
            return outputs, None
        except BaseException as exc:  # delivered to the request's own future
            return None, exc

    def _compute(self, batch: list[_Item]) -> list[tuple[Outputs | None, BaseException | None]]:
        if len(batch) == 1:
            return [self._compute_alone(batch[0])]
        sizes = [item.size or 0 for item in batch]
        total = sum(sizes)
        merged = {k: np.concatenate([item.inputs[k] for item in batch]) for k in batch[0].inputs}
        try:
            out = self._call(batch[0], merged)
            if not wire.follows_batch(out, total):
                raise ValueError("an output does not have the batch as its first dimension")
        except Exception:
            # One request's bad values (or a model whose outputs do not follow the batch)
            # must not fail the others: run each request alone.
            return [self._compute_alone(item) for item in batch]
        results: list[tuple[Outputs | None, BaseException | None]] = []
        start = 0
        for n in sizes:
            results.append(({k: v[start : start + n] for k, v in out.items()}, None))
            start += n
        return results

    def _run(self, batch: list[_Item]) -> None:
        results = self._compute(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for item, (outputs, error) in zip(batch, results, strict=True):
            if item.loop is None:
                assert isinstance(item.future, Future)
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.future.set_result(outputs)  # type: ignore[arg-type]
            else:
                by_loop.setdefault(item.loop, []).append((item.future, outputs, error))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, answers)
