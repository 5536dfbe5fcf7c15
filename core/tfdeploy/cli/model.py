"""Commands that work on one SavedModel: inspect, validate, package, predict, export, view."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from tfdeploy.cli.options import json_option, read_input, verbose_option
from tfdeploy.cli.output import echo, print_json, status_line


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    exp = min(int(math.log(n, 1000)), 4)
    return f"{n / 1000**exp:.1f} {'BkMGT'[exp]}B"


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def inspect(path: Path, as_json: bool) -> None:
    """Show a SavedModel's tags, signatures, TensorFlow version, size and digest.

    PATH is the SavedModel directory, its saved_model.pb, a base path of version folders, or
    a .tar.gz bundle. Loads no model (and no TensorFlow).
    """
    from tfdeploy.model.savedmodel import read_model_info

    info = read_model_info(path)
    if as_json:
        print_json(info.to_dict())
        return
    rows = [
        ("SavedModel", info.path),
        ("TensorFlow", info.tensorflow_version or "unknown"),
        ("Tags", "; ".join(",".join(m.tags) for m in info.meta_graphs)),
        ("Size", f"{_size(info.size_bytes)} in {len(info.files)} files"),
        ("Digest", info.digest),
    ]
    for key, value in rows:
        click.echo(f"{key:<11} {value}")
    if not info.signatures:
        click.echo("\nNo serving signatures.")
    for sig in info.signatures.values():
        click.echo(
            f"\nSignature {click.style(sig.name, bold=True)} ({sig.method_name or 'no method'})"
        )
        width = max((len(k) for k in [*sig.inputs, *sig.outputs]), default=0)
        for kind, specs in (("inputs", sig.inputs), ("outputs", sig.outputs)):
            click.echo(f"  {kind}:")
            for spec in specs.values():
                click.echo(f"    {spec.key:<{width}}  {spec.dtype:<10} {spec.shape_text()}")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--instances",
    "instances_file",
    type=click.Path(dir_okay=False),
    help="JSON or JSON-lines instances for a smoke prediction.",
)
@click.option(
    "--signature",
    default="serving_default",
    show_default=True,
    help="Signature for the smoke prediction.",
)
@json_option
def validate(path: Path, instances_file: str | None, signature: str, as_json: bool) -> None:
    """Check that a SavedModel can be served: PASS, WARN or FAIL with a reason and a fix.

    Exits 1 when any check fails.
    """
    from tfdeploy.predict.validate import validate as run_validate

    instances = read_input(instances_file) if instances_file else None
    report = run_validate(path, instances=instances, signature_name=signature)
    if as_json:
        print_json(report.to_dict())
    else:
        colours = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "blue"}
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            label = click.style(f"{check.status:<4}", fg=colours[check.status], bold=True)
            click.echo(f"{label}  {check.name:<{width}}  {check.reason}")
            if check.fix and check.status != "PASS":
                click.echo(f"      {'':<{width}}  fix: {check.fix}")
        counts = {s: sum(c.status == s for c in report.checks) for s in ("PASS", "WARN", "FAIL")}
        click.echo(
            f"\n{report.path}: {counts['PASS']} checks passed, {counts['WARN']} warnings, "
            f"{counts['FAIL']} failures"
        )
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name (letters, digits, '.', '_', '-').")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Version folder inside the bundle.",
)
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write the bundle into.",
)
@json_option
def package(path: Path, name: str, version: int, output_dir: Path, as_json: bool) -> None:
    """Package a SavedModel as NAME-VERSION.tar.gz in TF Serving's layout, with a manifest.

    The same files always give the same bytes.
    """
    from tfdeploy.model.bundle import package as build

    bundle = build(path, name=name, version=version, output_dir=output_dir)
    if as_json:
        print_json(bundle.to_dict())
        return
    click.echo(f"wrote {bundle.path} ({_size(bundle.path.stat().st_size)})")
    click.echo(f"  model   {bundle.manifest.name} version {bundle.manifest.version}")
    click.echo(f"  digest  {bundle.manifest.digest}")


@click.command()
@click.option(
    "--model",
    "model",
    help="SavedModel path (dir, saved_model.pb, base path or .tar.gz) or http(s):// URL.",
)
@click.option("--target", help="A deploy.yaml target (or plugin name, with -C) to predict through.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="The deploy.yaml for --target (default: ./deploy.yaml).",
)
@click.option("-C", "overrides", multiple=True, metavar="KEY=VALUE", help="Target setting.")
@click.option("--input", "input_file", help="Instances: a JSON file, JSON lines, or - for stdin.")
@click.option("--signature", default="serving_default", show_default=True, help="Signature name.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Instances per model call (or per HTTP request).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds a request to a server or target may take, retries of timeouts and 503s "
    "included; a refused connection fails at once.",
)
@verbose_option
@json_option
def predict(
    model: str | None,
    target: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
    input_file: str | None,
    signature: str,
    batch_size: int,
    timeout: float,
    verbose: bool,
    as_json: bool,
) -> None:
    """Predict instances with a local SavedModel, a running server or a deploy target.

    Exits 1 when the model cannot be loaded or the server or target cannot be reached.
    """
    if (model is None) == (target is None):
        raise click.UsageError("give exactly one of --model or --target")
    instances = read_input(input_file)
    if target is not None:
        from tfdeploy.cli.progress import TerminalProgress
        from tfdeploy.deployment.config import parse_overrides
        from tfdeploy.deployment.operations import predict_instances

        predictions = predict_instances(
            instances,
            target,
            config=config_file,
            signature_name=signature,
            batch_size=batch_size,
            overrides=parse_overrides(overrides),
            timeout=timeout,
            progress=TerminalProgress.factory(quiet=as_json, verbose=verbose),
        )
    else:
        from tfdeploy.api import predict_savedmodel

        assert model is not None
        if not model.startswith(("http://", "https://")):
            status_line(f"loading {model} ...", quiet=as_json)
        predictions = predict_savedmodel(
            instances, model, signature_name=signature, batch_size=batch_size, timeout=timeout
        )
    echo(predictions.to_json() if as_json else predictions.format(limit=None))


@click.command()
@click.argument("model_file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "export_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the SavedModel to.",
)
@click.option("--versioned", is_flag=True, help="Write into the next integer version folder.")
@click.option(
    "--overwrite/--no-overwrite",
    default=True,
    show_default=True,
    help="Replace an existing SavedModel at the destination.",
)
@json_option
def export(
    model_file: Path, export_dir: Path, versioned: bool, overwrite: bool, as_json: bool
) -> None:
    """Export a Keras model file (.keras or .h5) as a SavedModel."""
    from tfdeploy.errors import ModelNotFoundError, TfdeployError
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    if not model_file.is_file():
        raise ModelNotFoundError(
            f"no such file: {model_file}", hint="give the path of a .keras file"
        )
    status_line(f"loading {model_file} ...", quiet=as_json)
    keras = _tf.keras()
    try:
        model = keras.models.load_model(model_file, compile=False)
    except Exception as exc:  # Keras raises many unrelated types for a bad file
        raise TfdeployError(
            f"Keras cannot load {model_file}: {_first_line(exc)}",
            hint="give a model saved with model.save('model.keras')",
        ) from exc
    path = export_savedmodel(model, export_dir, versioned=versioned, overwrite=overwrite)
    if as_json:
        print_json({"path": str(path)})
    else:
        click.echo(f"exported {model_file} to {path}")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--logdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the TensorBoard events (a temporary directory by default).",
)
@click.option("--port", type=int, default=6006, show_default=True, help="TensorBoard's port.")
@click.option(
    "--launch/--no-launch",
    default=True,
    show_default=True,
    help="Start TensorBoard after writing the graph.",
)
def view(path: Path, logdir: Path | None, port: int, launch: bool) -> None:
    """Write a SavedModel's graphs for TensorBoard and open them in it."""
    from tfdeploy.predict.view import (
        INSTALL_HINT,
        launch_tensorboard,
        tensorboard_installed,
        write_graphs,
    )

    if launch and not tensorboard_installed():
        from tfdeploy.errors import DependencyError

        raise DependencyError(
            "TensorBoard is not installed, so the graph cannot be shown", hint=INSTALL_HINT
        )
    out = write_graphs(path, logdir)
    click.echo(f"wrote the graphs to {out}")
    if not launch:
        click.echo(f"view them with: tensorboard --logdir {out}")
        return
    click.echo(f"starting TensorBoard on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    launch_tensorboard(out, port=port)


COMMANDS: list[Any] = [inspect, validate, package, predict, export, view]
