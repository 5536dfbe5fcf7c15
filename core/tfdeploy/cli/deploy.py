"""Commands that act on deploy targets: deploy, plan, status, verify, undeploy, rollback.

Exit statuses: 0 success, 1 a target failed or could not be reached, 2 bad usage, 3 ``verify``
found a mismatch, 130 interrupted (or a confirmation refused). ``--json`` prints one JSON
document on stdout and nothing on stderr. Commands that change a target (deploy, rollback,
undeploy) ask first on a terminal, unless ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from tfdeploy.cli.options import Targets, read_input, target_options
from tfdeploy.cli.output import EXIT_FAILED, EXIT_MISMATCH, EXIT_OK, echo, print_json


def _state_colour(state: str) -> str:
    return {"serving": "green", "pending": "yellow", "failed": "red"}.get(state, "white")


def _show(report: Any, as_json: bool, lines: Callable[[str, Any], Iterable[str]]) -> int:
    """Print a report (``lines(target, result)`` for each target that succeeded, then the
    failures) or its JSON, and return the exit status: 0, or 1 when a target failed."""
    if as_json:
        print_json(report.to_dict())
    else:
        for outcome in report.outcomes:
            if outcome.result is not None:
                for line in lines(outcome.target, outcome.result):
                    echo(line)
        for outcome in report.outcomes:
            if outcome.error is not None:
                echo(f"{outcome.target}: error: {outcome.error.describe()}", err=True)
    return EXIT_OK if report.ok else EXIT_FAILED


def _confirm(question: str, *, yes: bool, as_json: bool) -> None:
    """Ask on a terminal unless ``--yes`` or ``--json``; a refusal aborts (exit 130)."""
    if not yes and not as_json and sys.stdin is not None and sys.stdin.isatty():
        click.confirm(question, abort=True)


def _plan_lines(target: str, plan: Any) -> list[str]:
    current = f"version {plan.current_version}" if plan.current_version else "nothing"
    head = f"{target}: {plan.action} (now: {current}; new digest {plan.new_digest})"
    return [head, *(f"  - {change}" for change in plan.changes)]


def _status_lines(target: str, st: Any) -> list[str]:
    state = click.style(st.state, fg=_state_colour(st.state), bold=True)
    version = f"version {st.version}" if st.version else "no version"
    lines = [f"{target} ({st.plugin}): {st.model} {version} {state}"]
    if st.digest:
        lines.append(f"  digest  {st.digest}")
    if st.url:
        lines.append(f"  url     {st.url}")
    for v in st.versions:
        labels = f" [{', '.join(v.labels)}]" if v.labels else ""
        traffic = f" {v.traffic_percent}% of traffic" if v.traffic_percent is not None else ""
        lines.append(f"  - {v.version}: {v.state}{labels}{traffic}")
    if st.detail:
        lines.append(f"  {st.detail}")
    return lines


def _now_lines(verb: str) -> Callable[[str, Any], list[str]]:
    return lambda target, st: [
        f"{target}: {verb}; now {st.model} version {st.version or '-'} ({st.state})"
    ]


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
def deploy(
    path: Path | None,
    targets: Targets,
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
    from tfdeploy.deployment import operations

    if dry_run:
        planned = operations.plan(path, name=name, **targets.api())
        raise click.exceptions.Exit(_show(planned, targets.as_json, _plan_lines))
    chosen = ", ".join(targets.names) or "every target in deploy.yaml"
    _confirm(f"Deploy to {chosen}?", yes=yes, as_json=targets.as_json)
    report = operations.deploy(
        path,
        name=name,
        version=version,
        validate=not no_validate,
        timeout=timeout,
        raise_on_error=False,
        **targets.api(),
    )

    def lines(target: str, result: Any) -> list[str]:
        st = result.status
        what = "deployed" if result.changed else "unchanged"
        sent = f", {result.bytes_sent} bytes sent" if result.changed else ""
        return [f"{target}: {what} — {st.model} version {st.version} ({st.state}{sent})"]

    raise click.exceptions.Exit(_show(report, targets.as_json, lines))


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@target_options
@click.option("--name", help="The model's name on the targets.")
def plan(path: Path | None, targets: Targets, name: str | None) -> None:
    """Show what a deploy would change on each target, changing nothing.

    Without --target, plans every deploy.yaml target. Imports no TensorFlow.
    """
    from tfdeploy.deployment import operations

    kwargs = targets.api()
    kwargs["all_targets"] = targets.all or not targets.names
    report = operations.plan(path, name=name, **kwargs)
    raise click.exceptions.Exit(_show(report, targets.as_json, _plan_lines))


@click.command()
@target_options
@click.option("--name", help="The model's name on the targets.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per target.")
def status(targets: Targets, name: str | None, timeout: float) -> None:
    """Show what runs on each target: version, digest, state and URL. Imports no TensorFlow.

    Exits 1 when a target cannot be reached or fails to answer (the others are still shown).
    """
    from tfdeploy.deployment import operations

    report = operations.status(name=name, timeout=timeout, **targets.api())
    raise click.exceptions.Exit(_show(report, targets.as_json, _status_lines))


@click.command()
@target_options
@click.option(
    "--input", "input_file", help="Instances (JSON or JSON lines); default: deploy.yaml's."
)
@click.option("--tolerance", type=float, help="Largest absolute difference accepted.")
@click.option(
    "--model", "model_path", type=click.Path(path_type=Path), help="The local SavedModel."
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds per target, retries of timeouts and 503s included.",
)
def verify(
    targets: Targets,
    input_file: str | None,
    tolerance: float | None,
    model_path: Path | None,
    timeout: float,
) -> None:
    """Check that each target answers the example instances like the local model.

    Exits 3 when a target's answers differ by more than the tolerance, 1 when a target cannot
    be reached (a refused connection is reported at once, not retried).
    """
    from tfdeploy.deployment import operations

    report = operations.verify(
        path=model_path,
        instances=read_input(input_file) if input_file else None,
        tolerance=tolerance,
        timeout=timeout,
        **targets.api(),
    )

    def lines(target: str, v: Any) -> list[str]:
        verdict = click.style("OK" if v.ok else "MISMATCH", fg="green" if v.ok else "red")
        head = f"{target}: {verdict} ({v.instances} instances, tolerance {v.tolerance:g})"
        return [head, *(f"  {o.output}: max abs diff {o.max_abs_diff:.3g}" for o in v.outputs)]

    code = _show(report, targets.as_json, lines)
    mismatch = any(o.result is not None and not o.result.ok for o in report.outcomes)
    raise click.exceptions.Exit(code if code else (EXIT_MISMATCH if mismatch else EXIT_OK))


def _require_targets(targets: Targets) -> None:
    if not targets.names and not targets.all:
        raise click.UsageError("give --target NAME (or --all)")


@click.command()
@target_options
@click.option("--name", help="The model's name on the targets.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def undeploy(targets: Targets, name: str | None, yes: bool) -> None:
    """Remove the model from the given targets."""
    from tfdeploy.deployment import operations

    _require_targets(targets)
    chosen = ", ".join(targets.names) or "every target"
    _confirm(f"Remove the model from {chosen}?", yes=yes, as_json=targets.as_json)
    report = operations.undeploy(name=name, **targets.api())
    raise click.exceptions.Exit(_show(report, targets.as_json, _now_lines("undeployed")))


@click.command()
@target_options
@click.option(
    "--to",
    "to",
    help="A version number or label to serve (default: the one before the current); a "
    "version a rollback set aside serves again (a roll forward).",
)
@click.option("--name", help="The model's name on the targets.")
@click.option(
    "--discard",
    is_flag=True,
    help="Delete the versions the rollback replaces instead of keeping them to roll forward.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rollback(targets: Targets, to: str | None, name: str | None, discard: bool, yes: bool) -> None:
    """Serve the version before the current one again (or the version or label --to).

    The version it replaces is kept, so a later rollback --to can serve it again, unless
    --discard. Asks first on a terminal, unless --yes or --json.
    """
    from tfdeploy.deployment import operations

    _require_targets(targets)
    chosen = ", ".join(targets.names) or "every target"
    goal = f"version {to}" if to else "the previous version"
    kept = "deleting" if discard else "keeping"
    _confirm(
        f"Roll {chosen} back to {goal}, {kept} the version it replaces?",
        yes=yes,
        as_json=targets.as_json,
    )
    report = operations.rollback(to=to, name=name, discard=discard, **targets.api())
    raise click.exceptions.Exit(_show(report, targets.as_json, _now_lines("rolled back")))


COMMANDS = [deploy, plan, status, verify, undeploy, rollback]
