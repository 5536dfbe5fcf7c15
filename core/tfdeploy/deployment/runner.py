"""Running one operation on several targets: concurrency, cancellation, retries, outcomes.

Each target runs in its own thread (one target runs in the caller's), reports through its own
:class:`~tfdeploy.deployment.target.Progress` (made by the caller's :data:`ProgressFactory`), and
ends as an :class:`Outcome`: its result, or the :class:`~tfdeploy.errors.TfdeployError` that
stopped it. A failure on one target does not stop the others; Ctrl-C stops them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tfdeploy.deployment.target import Progress
from tfdeploy.errors import TargetError, TfdeployError
from tfdeploy.predict.http import deadline

T = TypeVar("T")

#: Makes the progress reporter of one target, given the target's name.
ProgressFactory = Callable[[str], Progress]


def silent(_target: str) -> Progress:
    """A :data:`ProgressFactory` whose reporters report nothing."""
    return Progress()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one target did: its result, or the error that stopped it."""

    target: str
    result: T | None = None
    error: TfdeployError | None = None

    @property
    def ok(self) -> bool:
        """True when the target succeeded."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (errors as code, message and hint)."""
        out: dict[str, Any] = {"target": self.target, "ok": self.ok}
        if self.result is not None:
            out["result"] = self.result.to_dict()  # type: ignore[attr-defined]
        if self.error is not None:
            out["error"] = {
                "code": self.error.code,
                "message": self.error.message,
                "hint": self.error.hint,
                "retryable": self.error.retryable,
            }
        return out


@dataclass(frozen=True)
class Report(Generic[T]):
    """The outcomes of one operation on every target it touched, in the order asked."""

    outcomes: tuple[Outcome[T], ...]

    @property
    def ok(self) -> bool:
        """True when every target succeeded."""
        return all(o.ok for o in self.outcomes)

    def __getitem__(self, target: str) -> Outcome[T]:
        return next(o for o in self.outcomes if o.target == target)

    def results(self) -> dict[str, T]:
        """Each target's result; raises the first error if any target failed."""
        self.raise_for_errors()
        return {o.target: o.result for o in self.outcomes if o.result is not None}

    def raise_for_errors(self) -> None:
        """Raise the error of the only failed target, or one naming every failed target."""
        failed = [o for o in self.outcomes if o.error is not None]
        if len(failed) == 1 and failed[0].error is not None:
            raise failed[0].error
        if failed:
            raise TargetError(
                "; ".join(f"{o.target}: {o.error.message if o.error else ''}" for o in failed)
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"ok": self.ok, "targets": [o.to_dict() for o in self.outcomes]}


class _Cancellable(Progress):
    """Passes reports on; once ``cancelled`` is set, raises KeyboardInterrupt at the next
    :meth:`advance` or :meth:`heartbeat`, so Ctrl-C during a multi-target operation stops
    every target the way it stops one."""

    def __init__(self, inner: Progress, cancelled: threading.Event) -> None:
        self.inner = inner
        self.cancelled = cancelled

    def step(self, message: str) -> None:
        """Pass the step on."""
        self.inner.step(message)

    def advance(self, done: int, total: int) -> None:
        """Stop if cancelled, else pass the advance on."""
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        self.inner.advance(done, total)

    def log(self, line: str) -> None:
        """Pass the log line on."""
        self.inner.log(line)

    def heartbeat(self, waited: float) -> None:
        """Stop if cancelled, else pass the heartbeat on."""
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        self.inner.heartbeat(waited)

    def retrying(self, message: str, delay: float) -> None:
        """Stop if cancelled, else pass the retry on."""
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        self.inner.retrying(message, delay)


def with_retries(call: Callable[[], T], *, timeout: float, progress: Progress | None = None) -> T:
    """Run ``call``, retrying errors whose ``retryable`` is true, with backoff, until ``timeout``.

    ``timeout`` bounds the whole, remote calls included: each call made inside gets at most
    the time left (:func:`~tfdeploy.predict.http.deadline`). Errors that are not retryable
    (bad input, a refused connection, an unknown host) are raised at once. Each retry is
    reported through :meth:`Progress.retrying`, which the command line shows only with
    ``--verbose``.
    """
    end = time.monotonic() + timeout
    delay = 0.25
    with deadline(timeout):
        while True:
            try:
                return call()
            except TfdeployError as exc:
                if not exc.retryable:
                    raise
                left = end - time.monotonic()
                if left <= 0:
                    raise type(exc)(
                        f"{exc.message} (still failing after {timeout:g} s of retries)",
                        hint=exc.hint,
                        code=exc.code,
                        retryable=True,
                    ) from exc
                if progress is not None:
                    progress.retrying(exc.message, min(delay, left))
                time.sleep(min(delay, left))
                delay = min(delay * 2, 10.0)


def run_each(
    names: Sequence[str], work: Callable[[str, Progress], T], *, progress: ProgressFactory
) -> Report[T]:
    """Run ``work(name, progress)`` for every target name, concurrently when there are several."""
    cancelled = threading.Event()

    def one(name: str) -> Outcome[T]:
        try:
            return Outcome(name, result=work(name, _Cancellable(progress(name), cancelled)))
        except TfdeployError as exc:
            return Outcome(name, error=exc)

    if len(names) == 1:
        return Report((one(names[0]),))
    with ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
        futures = [pool.submit(one, n) for n in names]
        try:
            outcomes = tuple(f.result() for f in futures)
        except KeyboardInterrupt:
            cancelled.set()
            for f in futures:
                f.cancel()
            raise
    return Report(outcomes)
