"""Options and input helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class Targets:
    """The targets a command acts on, as ``--target``, ``--all``, ``--config`` and ``-C`` gave them."""

    names: tuple[str, ...]
    all: bool
    config: Path | None
    overrides: dict[str, Any]
    as_json: bool
    verbose: bool = False

    def api(self) -> dict[str, Any]:
        """Keyword arguments for an operation of :mod:`tfdeploy.deployment.operations`."""
        from tfdeploy.cli.progress import TerminalProgress

        return {
            "target": list(self.names),
            "all_targets": self.all,
            "config": self.config,
            "overrides": self.overrides,
            "progress": TerminalProgress.factory(quiet=self.as_json, verbose=self.verbose),
        }


verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show each retry of a failure worth retrying (a timeout, a 503).",
)


def target_options(fn: F) -> F:
    """``--target`` (repeatable), ``--all``, ``--config``, ``-C``, ``--json`` and ``--verbose``
    as one :class:`Targets` argument called ``targets``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tfdeploy.deployment.config import parse_overrides

        targets = Targets(
            names=tuple(kwargs.pop("target_names")),
            all=kwargs.pop("all_targets"),
            config=kwargs.pop("config_file"),
            overrides=parse_overrides(kwargs.pop("overrides")),
            as_json=kwargs.pop("as_json"),
            verbose=kwargs.pop("verbose"),
        )
        return fn(*args, targets=targets, **kwargs)

    options = [
        click.option(
            "-t",
            "--target",
            "target_names",
            multiple=True,
            help="A deploy.yaml target name, or a plugin name (settings from -C). Repeatable.",
        ),
        click.option("--all", "all_targets", is_flag=True, help="Every target in deploy.yaml."),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=True, path_type=Path),
            help="The deploy.yaml to read (default: ./deploy.yaml when present).",
        ),
        click.option(
            "-C",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set or override a target setting, e.g. -C base_path=/srv/models.",
        ),
        json_option,
        verbose_option,
    ]
    wrapped: Any = wrapper
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def read_input(source: str | None) -> Any:
    """Read a request from a file, ``-`` (stdin) or, when piped, stdin.

    The text is a request object, a JSON list of instances, or JSON lines
    (:func:`tfdeploy.predict.wire.parse_instances_text`).
    """
    from tfdeploy.predict.wire import parse_instances_text

    if source is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInputError(
                "no instances given",
                hint="pass --input FILE (JSON or JSON lines) or pipe JSON into the command",
            )
        source = "-"
    where = "standard input" if source == "-" else source
    try:
        if source == "-":
            buffer = getattr(sys.stdin, "buffer", None)
            raw: bytes | str = buffer.read() if buffer is not None else sys.stdin.read()
        else:
            with open(source, "rb") as fh:
                raw = fh.read()
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except OSError as exc:
        raise InvalidInputError(f"cannot read {source}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{where} is not UTF-8 text (byte {exc.start}: {exc.reason})",
            hint="save the instances as UTF-8 JSON",
        ) from exc
    return parse_instances_text(text.removeprefix("\ufeff"), where=where)
