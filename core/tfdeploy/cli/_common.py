"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tfdeploy.errors import InvalidInputError

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document for machines, and nothing else.",
)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (non-finite floats as bare tokens)."""
    click.echo(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    from tfdeploy import contract  # numpy costs start-up time; only needed for arrays

    return contract.json_default(value)


def status_line(text: str, *, quiet: bool = False) -> None:
    """Progress for people, on stderr; nothing when ``quiet`` (``--json``)."""
    if not quiet:
        click.echo(text, err=True)


def read_input(source: str | None) -> Any:
    """Read a request from a file, ``-`` (stdin) or, when piped, stdin; see :func:`parse_request_text`."""
    if source is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInputError(
                "no instances given",
                hint="pass --input FILE (JSON or JSON lines) or pipe JSON into the command",
            )
        source = "-"
    if source == "-":
        text = sys.stdin.read()
        where = "standard input"
    else:
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc.strerror}") from exc
        where = source
    return parse_request_text(text, where=where)


def parse_request_text(text: str, *, where: str = "input") -> Any:
    """Parse instances from text: a request object, a JSON list of instances, or JSON lines.

    JSON lines hold one instance per line, as ``gcloud ai-platform predict --json-instances``
    reads them.
    """
    from tfdeploy import contract

    stripped = text.strip()
    if not stripped:
        raise InvalidInputError(f"{where} is empty", hint="give a JSON list of instances")
    try:
        return contract.loads(stripped)
    except InvalidInputError as whole_error:
        lines = [line for line in stripped.splitlines() if line.strip()]
        if len(lines) < 2:
            raise InvalidInputError(f"{where}: {whole_error.message}") from whole_error
        instances = []
        for number, line in enumerate(lines, start=1):
            try:
                instances.append(contract.loads(line))
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"{where} line {number}: {exc.message}",
                    hint="give one JSON object, one JSON list, or one JSON instance per line",
                ) from exc
        return instances
