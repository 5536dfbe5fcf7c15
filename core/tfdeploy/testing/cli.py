"""Running the ``tfdeploy`` command line in a fresh process, as a user would, from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Runs the CLI and prints, last on stderr, whether TensorFlow was imported.
_RUNNER = (
    "import sys, atexit\n"
    "atexit.register(lambda: print('TENSORFLOW=%s' % ('tensorflow' in sys.modules),"
    " file=sys.stderr))\n"
    "from tfdeploy.cli import main\n"
    "main(sys.argv[1:])\n"
)
_TF_NOISE = ("I0000", "W0000", "E0000", "WARNING: All log", "To enable the following")


@dataclass(frozen=True)
class Run:
    """One finished command: exit status, output, and whether it imported TensorFlow."""

    returncode: int
    stdout: str
    stderr: str
    tensorflow: bool


class CLI:
    """Runs ``tfdeploy ARGS`` in a subprocess in ``cwd``; ``env`` adds environment variables."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def __call__(self, *args: str, timeout: float = 180) -> Run:
        """Run the command and return what it did; TensorFlow's C++ log lines are dropped."""
        result = subprocess.run(
            [sys.executable, "-c", _RUNNER, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = result.stderr.splitlines()
        marker = lines.pop() if lines and lines[-1].startswith("TENSORFLOW=") else ""
        return Run(
            returncode=result.returncode,
            stdout=result.stdout,
            stderr="\n".join(line for line in lines if not line.startswith(_TF_NOISE)),
            tensorflow=marker == "TENSORFLOW=True",
        )
