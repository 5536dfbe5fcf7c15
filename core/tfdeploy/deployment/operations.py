"""Deploy, plan, status, verify, predict, undeploy and rollback across deploy targets.

The Python API behind ``tfdeploy deploy`` and friends. A target is named by its deploy.yaml
name or by a plugin name (then its settings come from ``overrides``). Several targets run
concurrently, each reporting through the progress its caller's ``progress`` factory makes;
a failure on one does not stop the others. Retryable failures are retried with backoff until
``timeout``. Each operation returns a :class:`~tfdeploy.deployment.runner.Report` and prints
nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tfdeploy.deployment.project import AnyTarget, Project, open_project
from tfdeploy.deployment.runner import ProgressFactory, Report, run_each, silent, with_retries
from tfdeploy.deployment.target import DeployResult, Plan, Progress, Status
from tfdeploy.deployment.verification import Verification, compare
from tfdeploy.errors import ConfigError, TargetError, TfdeployError

if TYPE_CHECKING:
    from tfdeploy.model.bundle import Bundle
    from tfdeploy.predict.predictions import Predictions
    from tfdeploy.predict.validate import Check, ExtraCheck

DEFAULT_TIMEOUT = 600.0
#: Instances per request when predicting through a target (as in :mod:`tfdeploy.predict.wire`).
DEFAULT_BATCH_SIZE = 512

T = TypeVar("T")
PathLike = str | os.PathLike[str]


@contextmanager
def _opened(
    project: Project, name: str, overrides: Mapping[str, Any] | None, progress: Progress
) -> Iterator[AnyTarget]:
    target = project.open_target(name, overrides=overrides, progress=progress)
    try:
        yield target
    finally:
        target.close()


def _each_target(
    project: Project,
    names: Sequence[str],
    overrides: Mapping[str, Any] | None,
    call: Callable[[AnyTarget], T],
    *,
    timeout: float,
    progress: ProgressFactory,
) -> Report[T]:
    """Open each target (concurrently for several) and run ``call`` on it, with retries."""

    def work(name: str, reporter: Progress) -> T:
        with _opened(project, name, overrides, reporter) as target:
            return with_retries(lambda: call(target), timeout=timeout, progress=reporter)

    return run_each(names, work, progress=progress)


def deploy(
    path: PathLike | None = None,
    *,
    target: str | Sequence[str] | None = None,
    all_targets: bool = False,
    config: PathLike | None = None,
    name: str | None = None,
    version: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    validate: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressFactory = silent,
    raise_on_error: bool = True,
) -> Report[DeployResult]:
    """Validate, package and deploy a SavedModel to one or more targets.

    ``path`` defaults to deploy.yaml's ``model.path``; ``target`` is a deploy.yaml target name
    or a plugin name (its settings then come from ``overrides``), or a list of them;
    ``all_targets`` adds every deploy.yaml target. Targets that serve and whose plan is
    ``noop`` (by default: their serving digest already equals the model's) are left alone.
    Returns a :class:`~tfdeploy.deployment.runner.Report`; with ``raise_on_error`` a failed
    target raises its error instead.

    Example::

        tfdeploy.deploy("savedmodel", target="tfserving", name="digits",
                        overrides={"base_path": "/srv/models"})
    """
    from tfdeploy.model.bundle import Bundle

    project = open_project(config, model_path=path, name=name)
    names = project.select(target, all_targets)
    model_path = project.require_model()
    assert project.model_name is not None
    # Open every target first, so a configuration error stops everything before any work.
    opened = [project.open_target(n, overrides=overrides) for n in names]
    checks = [check for t in opened for check in _target_checks(project, t)]
    for t in opened:
        t.close()
    bundle = Bundle.from_model(model_path, name=project.model_name, version=version or 1)
    validated = _Once(lambda: _validate(project, model_path, checks) if validate else None)

    def work(n: str, reporter: Progress) -> DeployResult:
        with _opened(project, n, overrides, reporter) as t:
            # The target's plan decides (by default: the digest that serves), so a target can
            # count settings of its own that a deploy applies, not only the model.
            planned = with_retries(lambda: t.plan(bundle), timeout=timeout, progress=reporter)
            current = with_retries(t.status, timeout=timeout, progress=reporter)
            if planned.action == "noop" and current.state in ("serving", "unknown"):
                reporter.step(f"version {current.version} has this digest already; nothing to do")
                return DeployResult(status=current, changed=False, message="unchanged")
            if validate:
                reporter.step("validating the model")
            validated.run()
            result = with_retries(lambda: t.deploy(bundle), timeout=timeout, progress=reporter)
            reporter.step(result.message or "done")
            return result

    try:
        report = run_each(names, work, progress=progress)
    finally:
        bundle.close()
    if raise_on_error:
        report.raise_for_errors()
    return report


class _Once:
    """Runs a function once across threads; later callers get its result or its error."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False
        self._error: TfdeployError | None = None

    def run(self) -> None:
        with self._lock:
            if not self._done:
                try:
                    self._fn()
                except TfdeployError as exc:
                    self._error = exc
                self._done = True
            if self._error is not None:
                raise self._error


def _target_checks(project: Project, target: AnyTarget) -> list[ExtraCheck]:
    """The validation checks plugins add for ``target`` (the ``target_checks`` hook)."""
    found = project.plugins.manager.hook.target_checks(target=target)
    return [check for checks in found if checks for check in checks]


def _validate(project: Project, model_path: Path, checks: Sequence[ExtraCheck]) -> None:
    from tfdeploy.predict.validate import validate as run_validate

    report = run_validate(
        model_path,
        instances=project.instances,
        signature_name=project.signature,
        extra_checks=checks,
    )
    if not report.ok:
        failed: list[Check] = [c for c in report.checks if c.status == "FAIL"]
        raise TargetError(
            "the model did not pass validation: "
            + "; ".join(f"{c.name}: {c.reason}" for c in failed),
            hint=f"run tfdeploy validate {model_path} for details",
        )


def plan(
    path: PathLike | None = None,
    *,
    target: str | Sequence[str] | None = None,
    all_targets: bool = False,
    config: PathLike | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    progress: ProgressFactory = silent,
) -> Report[Plan]:
    """What a deploy would do on each target, touching nothing and importing no TensorFlow."""
    from tfdeploy.model.bundle import Bundle

    project = open_project(config, model_path=path, name=name)
    names = project.select(target, all_targets)
    assert project.model_name is not None
    bundle: Bundle = Bundle.from_model(project.require_model(), name=project.model_name)
    return _each_target(
        project, names, overrides, lambda t: t.plan(bundle), timeout=timeout, progress=progress
    )


def status(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    config: PathLike | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
    progress: ProgressFactory = silent,
) -> Report[Status]:
    """What runs on each target: model, version, digest, state and URL.

    With neither ``target`` nor ``all_targets``, every deploy.yaml target is asked.
    """
    project = open_project(config, name=name)
    names = project.select(target, all_targets or not target)
    return _each_target(
        project, names, overrides, lambda t: t.status(), timeout=timeout, progress=progress
    )


def predict_target(
    instances: Any,
    target: str,
    *,
    config: PathLike | None = None,
    signature_name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send ``instances`` (or a whole request) to a target and return its contract answer."""
    from tfdeploy.predict import wire

    project = open_project(config)
    body = wire.as_request(instances, signature_name or project.signature)
    with _opened(project, target, overrides, Progress()) as t:
        return with_retries(lambda: t.predict(body), timeout=timeout)


def predict_instances(
    instances: Any,
    target: str,
    *,
    config: PathLike | None = None,
    signature_name: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    progress: ProgressFactory = silent,
) -> Predictions:
    """Predict ``instances`` through a target, ``batch_size`` instances per request.

    ``timeout`` bounds each request, its retries included; a refused connection fails at once.
    """
    from tfdeploy.predict import wire
    from tfdeploy.predict.remote import predict_in_batches

    project = open_project(config)
    body = wire.as_request(instances, signature_name or project.signature)
    reporter = progress(target)
    with _opened(project, target, overrides, reporter) as t:

        def send(chunk: dict[str, Any]) -> Mapping[str, Any]:
            return with_retries(lambda: t.predict(chunk), timeout=timeout, progress=reporter)

        return predict_in_batches(
            send,
            body,
            batch_size=batch_size,
            where=f"target {target!r}",
            output_names=lambda: _local_output_names(project, body.get("signature_name")),
        )


def _local_output_names(project: Project, signature: str | None) -> list[str] | None:
    """The output names of the project's model, read without TensorFlow (``None``: unknown)."""
    from tfdeploy.model.savedmodel import read_model_info

    if project.model_path is None:
        return None
    try:
        sig = read_model_info(project.model_path).signatures.get(signature or project.signature)
    except TfdeployError:
        return None
    return list(sig.outputs) if sig is not None else None


def verify(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    config: PathLike | None = None,
    path: PathLike | None = None,
    instances: Any = None,
    tolerance: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    progress: ProgressFactory = silent,
) -> Report[Verification]:
    """Send the example instances to each target and compare with the local model's answers."""
    from tfdeploy.predict import wire
    from tfdeploy.predict.runtime import LoadedModel

    project = open_project(config, model_path=path)
    names = project.select(target, all_targets or not target)
    examples = instances if instances is not None else project.instances
    if examples is None:
        raise ConfigError(
            "verify needs example instances",
            hint="set model.instances in deploy.yaml, or pass --input FILE",
        )
    body = wire.as_request(examples, project.signature)
    expected = LoadedModel(project.require_model()).predict(body)
    limit = project.tolerance if tolerance is None else tolerance
    count = len(body["instances"]) if "instances" in body else 1

    def work(n: str, reporter: Progress) -> Verification:
        with _opened(project, n, overrides, reporter) as t:
            got = with_retries(lambda: t.predict(body), timeout=timeout, progress=reporter)
        return Verification(n, limit, count, tuple(compare(expected, got, limit)))

    return run_each(names, work, progress=progress)


def undeploy(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    config: PathLike | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
    progress: ProgressFactory = silent,
) -> Report[Status]:
    """Remove the deployment from each target."""
    project = open_project(config, name=name)
    names = project.select(target, all_targets)
    return _each_target(
        project, names, overrides, lambda t: t.undeploy(), timeout=timeout, progress=progress
    )


def rollback(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    to: str | None = None,
    discard: bool = False,
    config: PathLike | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 300.0,
    progress: ProgressFactory = silent,
) -> Report[Status]:
    """Serve the previous version again (or version/label ``to``) on each target.

    The versions a rollback replaces are kept (``rollback(to=...)`` serves them again) unless
    ``discard``.
    """
    project = open_project(config, name=name)
    names = project.select(target, all_targets)
    return _each_target(
        project,
        names,
        overrides,
        lambda t: t.rollback(to, discard=discard),
        timeout=timeout,
        progress=progress,
    )
