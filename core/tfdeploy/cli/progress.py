"""Progress lines on a terminal for long steps of deploy operations."""

from __future__ import annotations

import sys
import time
from typing import Any

from tfdeploy.cli.output import echo
from tfdeploy.deployment.target import Progress


class TerminalProgress(Progress):
    """Progress lines on stderr prefixed with the target's name; silent when ``quiet``.

    Retries are shown only when ``verbose``: the error that ends them says what failed.
    """

    def __init__(self, target: str, *, quiet: bool, verbose: bool = False) -> None:
        self.target = target
        self.quiet = quiet
        self.verbose = verbose
        self._last = 0.0

    @classmethod
    def factory(cls, *, quiet: bool, verbose: bool = False) -> Any:
        """A progress factory for the operations of :mod:`tfdeploy.deployment.operations`."""
        return lambda target: cls(target, quiet=quiet, verbose=verbose)

    def _say(self, text: str) -> None:
        if not self.quiet:
            echo(f"[{self.target}] {text}", err=True)
            sys.stderr.flush()

    def step(self, message: str) -> None:
        """Print the step."""
        self._say(message)

    def advance(self, done: int, total: int) -> None:
        """Print the share done, at most twice a second and at the end."""
        now = time.monotonic()
        if done >= total or now - self._last >= 0.5:
            self._last = now
            percent = 100 * done // total if total else 100
            self._say(f"{percent:3d}% ({done} of {total} bytes)")

    def log(self, line: str) -> None:
        """Print a remote log line."""
        self._say(f"| {line}")

    def retrying(self, message: str, delay: float) -> None:
        """With ``verbose``, print the failure and when it is tried again."""
        if self.verbose:
            self._say(f"{message}; retrying in {delay:.1f} s")

    def heartbeat(self, waited: float) -> None:
        """Print a line every ten seconds of waiting."""
        now = time.monotonic()
        if waited >= 10 and now - self._last >= 10:
            self._last = now
            self._say(f"still waiting ({waited:.0f} s)")
