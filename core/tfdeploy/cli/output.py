"""What the command line prints: masked text, JSON documents, status lines, exit codes.

Every line goes through :func:`tfdeploy.secrets.redact` as it is printed, so a secret never
reaches a terminal or a log, whatever produced the text.
"""

from __future__ import annotations

import json
from typing import Any

import click

from tfdeploy.secrets import redact

#: Exit statuses: success, a failure, bad usage, ``verify`` found a mismatch, interrupted.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISMATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def echo(text: str = "", *, err: bool = False) -> None:
    """Print ``text`` with secrets masked."""
    click.echo(redact(text), err=err)


def print_json(data: Any) -> None:
    """Print one JSON document on stdout, indented, secrets masked (non-finite floats as tokens)."""
    echo(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    from tfdeploy.predict import wire  # numpy costs start-up time; only needed for arrays

    try:
        return wire.json_default(value)
    except TypeError:
        return str(value)


def status_line(text: str, *, quiet: bool = False) -> None:
    """Progress for people, on stderr; nothing when ``quiet`` (``--json``)."""
    if not quiet:
        echo(text, err=True)
