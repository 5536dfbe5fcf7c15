"""Commands that act on deploy targets: deploy, plan, status, verify, undeploy, rollback.

Exit statuses: 0 success, 1 a target failed, 2 bad usage, 3 ``verify`` found a mismatch,
130 interrupted. ``--json`` prints one JSON document on stdout and nothing on stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tfdeploy.cli._common import json_option, read_input
from tfdeploy.errors import TfdeployError

F = TypeVar("F", bound=Callable[..., Any])


def redact(text: str) -> str:
    """``text`` with the secrets of the loaded deploy.yaml masked (see :func:`tfdeploy.config.redact`)."""
    from tfdeploy.config import redact as mask

    return mask(text)


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-C key=value`` pairs as settings (see :func:`tfdeploy.config.parse_overrides`)."""
    from tfdeploy.config import parse_overrides as parse

    return parse(pairs)


def _redacting(fn: F) -> F:
    """Mask secrets in the message of any error the command raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TfdeployError as exc:
            exc.message = redact(exc.message)
            exc.hint = redact(exc.hint) if exc.hint else None
            exc.args = (exc.message,)
            raise

    return wrapper  # type: ignore[return-value]


def echo(text: str = "", *, err: bool = False) -> None:
    """Print ``text`` with secrets masked."""
    click.echo(redact(text), err=err)


def emit_json(data: Any) -> None:
    """Print one JSON document with secrets masked."""
    echo(json.dumps(data, indent=2, default=str))


def target_options(fn: F) -> F:
    """``--target`` (repeatable), ``--all``, ``--config``, ``-C`` and ``--json``."""
    options = [
        click.option(
            "-t",
            "--target",
            "targets",
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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _state_colour(state: str) -> str:
    return {"serving": "green", "pending": "yellow", "failed": "red"}.get(state, "white")


def _fail_lines(report: Any) -> None:
    for outcome in report.outcomes:
        if outcome.error is not None:
            hint = f" — {outcome.error.hint}" if outcome.error.hint else ""
            echo(f"{outcome.target}: error: {outcome.error.message}{hint}", err=True)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@target_options
@click.option("--name", help="The model's name on the targets (default: deploy.yaml or folder).")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    help="Version number to create, above every existing one (default: the next).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-validate", is_flag=True, help="Skip validating the model first.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds per target.")
@_redacting
def deploy(
    path: Path | None,
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    name: str | None,
    version: int | None,
    dry_run: bool,
    yes: bool,
    no_validate: bool,
    timeout: float,
) -> None:
    """Validate, package and deploy a SavedModel to one or more targets.

    PATH defaults to deploy.yaml's model.path. Targets whose serving digest equals the
    model's are left alone. Several --target or --all deploy concurrently. Exits 1 when a
    target failed (the others still deploy).
    """
    from tfdeploy import orchestrate

    settings = parse_overrides(overrides)
    if dry_run:
        _show_plan(
            orchestrate.plan(
                path,
                target=targets,
                all_targets=all_targets,
                config=config_file,
                name=name,
                overrides=settings,
                quiet=as_json,
            ),
            as_json,
        )
        return
    if not yes and not as_json and sys.stdin is not None and sys.stdin.isatty():
        chosen = ", ".join(targets) or "every target in deploy.yaml"
        click.confirm(f"Deploy to {chosen}?", abort=True)
    report = orchestrate.deploy(
        path,
        target=targets,
        all_targets=all_targets,
        config=config_file,
        name=name,
        version=version,
        overrides=settings,
        validate=not no_validate,
        timeout=timeout,
        quiet=as_json,
        raise_on_error=False,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            if outcome.result is not None:
                st = outcome.result.status
                what = "deployed" if outcome.result.changed else "unchanged"
                sent = f", {outcome.result.bytes_sent} bytes sent" if outcome.result.changed else ""
                echo(
                    f"{outcome.target}: {what} — {st.model} version {st.version} ({st.state}{sent})"
                )
        _fail_lines(report)
    raise click.exceptions.Exit(report.exit_code)


def _show_plan(report: Any, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            plan = outcome.result
            if plan is None:
                continue
            current = f"version {plan.current_version}" if plan.current_version else "nothing"
            echo(f"{outcome.target}: {plan.action} (now: {current}; new digest {plan.new_digest})")
            for change in plan.changes:
                echo(f"  - {change}")
        _fail_lines(report)
    if not report.ok:
        raise click.exceptions.Exit(report.exit_code)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@target_options
@click.option("--name", help="The model's name on the targets.")
@_redacting
def plan(
    path: Path | None,
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    name: str | None,
) -> None:
    """Show what a deploy would change on each target, changing nothing.

    Without --target, plans every deploy.yaml target. Imports no TensorFlow.
    """
    from tfdeploy import orchestrate

    report = orchestrate.plan(
        path,
        target=targets,
        all_targets=all_targets or not targets,
        config=config_file,
        name=name,
        overrides=parse_overrides(overrides),
        quiet=as_json,
    )
    _show_plan(report, as_json)


@click.command()
@target_options
@click.option("--name", help="The model's name on the targets.")
@_redacting
def status(
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    name: str | None,
) -> None:
    """Show what runs on each target: version, digest, state and URL. Imports no TensorFlow."""
    from tfdeploy import orchestrate

    report = orchestrate.status(
        targets,
        all_targets=all_targets,
        config=config_file,
        name=name,
        overrides=parse_overrides(overrides),
        quiet=as_json,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            st = outcome.result
            if st is None:
                continue
            state = click.style(st.state, fg=_state_colour(st.state), bold=True)
            version = f"version {st.version}" if st.version else "no version"
            echo(f"{outcome.target} ({st.plugin}): {st.model} {version} {state}")
            if st.digest:
                echo(f"  digest  {st.digest}")
            if st.url:
                echo(f"  url     {st.url}")
            for v in st.versions:
                labels = f" [{', '.join(v.labels)}]" if v.labels else ""
                echo(f"  - {v.version}: {v.state}{labels}")
            if st.detail:
                echo(f"  {st.detail}")
        _fail_lines(report)
    raise click.exceptions.Exit(report.exit_code)


@click.command()
@target_options
@click.option(
    "--input", "input_file", help="Instances (JSON or JSON lines); default: deploy.yaml's."
)
@click.option("--tolerance", type=float, help="Largest absolute difference accepted.")
@click.option(
    "--model", "model_path", type=click.Path(path_type=Path), help="The local SavedModel."
)
@_redacting
def verify(
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    input_file: str | None,
    tolerance: float | None,
    model_path: Path | None,
) -> None:
    """Check that each target answers the example instances like the local model.

    Exits 3 when a target's answers differ by more than the tolerance.
    """
    from tfdeploy import orchestrate

    report = orchestrate.verify(
        targets,
        all_targets=all_targets,
        config=config_file,
        path=model_path,
        instances=read_input(input_file) if input_file else None,
        tolerance=tolerance,
        overrides=parse_overrides(overrides),
        quiet=as_json,
    )
    mismatch = any(o.result is not None and not o.result.ok for o in report.outcomes)
    if as_json:
        emit_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            v = outcome.result
            if v is None:
                continue
            verdict = click.style("OK" if v.ok else "MISMATCH", fg="green" if v.ok else "red")
            echo(
                f"{outcome.target}: {verdict} ({v.instances} instances, tolerance {v.tolerance:g})"
            )
            for o in v.outputs:
                echo(f"  {o.output}: max abs diff {o.max_abs_diff:.3g}")
        _fail_lines(report)
    if not report.ok:
        raise click.exceptions.Exit(orchestrate.EXIT_FAILED)
    raise click.exceptions.Exit(orchestrate.EXIT_MISMATCH if mismatch else orchestrate.EXIT_OK)


def _status_report(report: Any, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            st = outcome.result
            if st is not None:
                echo(
                    f"{outcome.target}: {verb}; now {st.model} version {st.version or '-'} ({st.state})"
                )
        _fail_lines(report)
    raise click.exceptions.Exit(report.exit_code)


@click.command()
@target_options
@click.option("--name", help="The model's name on the targets.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_redacting
def undeploy(
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    name: str | None,
    yes: bool,
) -> None:
    """Remove the model from the given targets."""
    from tfdeploy import orchestrate

    if not targets and not all_targets:
        raise click.UsageError("give --target NAME (or --all)")
    if not yes and not as_json and sys.stdin is not None and sys.stdin.isatty():
        click.confirm(f"Remove the model from {', '.join(targets) or 'every target'}?", abort=True)
    project_targets = list(targets) or orchestrate.open_project(config_file).target_names()
    report = orchestrate.undeploy(
        project_targets,
        config=config_file,
        name=name,
        overrides=parse_overrides(overrides),
        quiet=as_json,
    )
    _status_report(report, as_json, "undeployed")


@click.command()
@target_options
@click.option("--to", "to", help="A version number or label to go back to (default: the previous).")
@click.option("--name", help="The model's name on the targets.")
@_redacting
def rollback(
    targets: tuple[str, ...],
    all_targets: bool,
    config_file: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    to: str | None,
    name: str | None,
) -> None:
    """Serve the version before the last deploy again (or the version or label --to)."""
    from tfdeploy import orchestrate

    if not targets and not all_targets:
        raise click.UsageError("give --target NAME (or --all)")
    project_targets = list(targets) or orchestrate.open_project(config_file).target_names()
    report = orchestrate.rollback(
        project_targets,
        to=to,
        config=config_file,
        name=name,
        overrides=parse_overrides(overrides),
        quiet=as_json,
    )
    _status_report(report, as_json, "rolled back")


COMMANDS = [deploy, plan, status, verify, undeploy, rollback]
