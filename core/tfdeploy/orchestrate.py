"""Deploy, plan, status, verify, undeploy and rollback across deploy targets.

The Python API behind ``tfdeploy deploy`` and friends. A target is named by its deploy.yaml
name or by a plugin name (then its settings come from ``overrides``). Several targets run
concurrently, each reporting progress under its own name; a failure on one does not stop the
others. Transient failures are retried with backoff until ``timeout``.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tfdeploy import config as configuration
from tfdeploy.errors import ConfigError, TargetError, TfdeployError, TransientError
from tfdeploy.signatures import DEFAULT_SIGNATURE
from tfdeploy.targets import DeployResult, Plan, Progress, Status, Target, TargetConfig

if TYPE_CHECKING:
    from tfdeploy.predictions import Predictions

#: Exit statuses of the CLI: all went well, something failed, verify found a mismatch.
EXIT_OK, EXIT_FAILED, EXIT_MISMATCH = 0, 1, 3
DEFAULT_TIMEOUT = 600.0

T = TypeVar("T")
AnyTarget = Target[TargetConfig]


# --- results -------------------------------------------------------------------------------


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
        """A JSON-ready description, secrets masked."""
        out: dict[str, Any] = {"target": self.target, "ok": self.ok}
        if self.result is not None:
            out["result"] = self.result.to_dict()  # type: ignore[attr-defined]
        if self.error is not None:
            out["error"] = {
                "code": self.error.code,
                "message": configuration.redact(self.error.message),
                "hint": configuration.redact(self.error.hint) if self.error.hint else None,
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

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_OK` or :data:`EXIT_FAILED`."""
        return EXIT_OK if self.ok else EXIT_FAILED

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


@dataclass(frozen=True)
class OutputComparison:
    """One output of a verify: the largest absolute difference from the local model."""

    output: str
    max_abs_diff: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"output": self.output, "max_abs_diff": self.max_abs_diff, "ok": self.ok}


@dataclass(frozen=True)
class Verification:
    """A target's answers compared with the local model's, output by output."""

    target: str
    tolerance: float
    instances: int
    outputs: tuple[OutputComparison, ...]

    @property
    def ok(self) -> bool:
        """True when every output is within tolerance."""
        return all(o.ok for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "target": self.target,
            "ok": self.ok,
            "tolerance": self.tolerance,
            "instances": self.instances,
            "outputs": [o.to_dict() for o in self.outputs],
        }


# --- the project: deploy.yaml, the model, the plugins --------------------------------------


@dataclass
class Project:
    """Where a command runs: the deploy.yaml (if any), the model, and the installed plugins."""

    config: configuration.DeployConfig | None
    model_path: Path | None
    model_name: str | None
    signature: str = DEFAULT_SIGNATURE
    instances: Any = None
    tolerance: float = 1e-4
    _plugins: Any = field(default=None, repr=False)

    @property
    def plugins(self) -> Any:
        """The loaded plugins (:class:`tfdeploy.plugins.Plugins`)."""
        if self._plugins is None:
            from tfdeploy.plugins import get_plugins

            self._plugins = get_plugins()
        return self._plugins

    def target_names(self) -> list[str]:
        """The targets deploy.yaml names, in file order."""
        return list(self.config.targets) if self.config else []

    def open_target(
        self,
        name: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> AnyTarget:
        """An instance of target ``name`` (deploy.yaml name or plugin name) with its config."""
        overrides = dict(overrides or {})
        if self.config is not None and name in self.config.targets:
            entry = self.config.targets[name]
            target_type, _ = self.config.target_config(name, self.plugins)
            settings = {**entry.settings, **overrides}
            cfg = self.config
            target_config = configuration.build_target_config(
                target_type.target_class.Config,
                settings,
                where=lambda key: (
                    f"-C {'.'.join(map(str, key))}"
                    if key and key[0] in overrides
                    else cfg.where(("targets", name, *key))
                ),
            )
        else:
            try:
                target_type = self.plugins.target_type(name)
            except TfdeployError as exc:
                if self.config is not None:
                    known = ", ".join(self.config.targets) or "none"
                    raise ConfigError(
                        f"{name!r} is neither a target of {self.config.path} ({known}) "
                        "nor an installed target plugin",
                        hint=exc.hint,
                    ) from None
                raise
            target_config = configuration.build_target_config(
                target_type.target_class.Config,
                overrides,
                where=lambda key: f"-C {'.'.join(map(str, key))}",
            )
        if not self.model_name:
            raise ConfigError("no model name", hint="pass --name, or set model.name in deploy.yaml")
        target: AnyTarget = target_type.target_class(
            target_config,
            name=name,
            model_name=self.model_name,
            plugin=target_type.name,
            progress=progress,
        )
        return target

    def require_model(self) -> Path:
        """The model path, or a :class:`ConfigError` saying how to give one."""
        if self.model_path is None:
            raise ConfigError(
                "no model to deploy",
                hint="pass the SavedModel path, or write a deploy.yaml with a model section",
            )
        return self.model_path


def open_project(
    config: str | os.PathLike[str] | None = None,
    *,
    model_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> Project:
    """Read deploy.yaml (``config``, or ./deploy.yaml when it exists) and settle the model."""
    config_file = configuration.find(config) if config is not None else configuration.find()
    if config is not None and config_file is None:
        raise ConfigError(f"no deploy.yaml at {config}", hint="see deploy.yaml.example")
    loaded = configuration.load(config_file) if config_file is not None else None
    path = Path(model_path) if model_path is not None else None
    model_name = name
    signature, instances, tolerance = DEFAULT_SIGNATURE, None, 1e-4
    if loaded is not None:
        path = path or loaded.model_path()
        model_name = model_name or loaded.model_name()
        signature = loaded.model.signature
        instances = loaded.model.instances
        tolerance = loaded.verify.tolerance
    elif path is not None and not model_name:
        model_name = path.resolve().name
    project = Project(
        config=loaded,
        model_path=path,
        model_name=model_name,
        signature=signature,
        tolerance=tolerance,
    )
    if loaded is not None and instances is not None:
        project.instances = loaded.instances()
    return project


def _target_names(
    project: Project, target: str | Sequence[str] | None, all_targets: bool
) -> list[str]:
    names = [target] if isinstance(target, str) else list(target or [])
    if all_targets:
        names = [*names, *[n for n in project.target_names() if n not in names]]
    if not names:
        known = ", ".join(project.target_names())
        raise ConfigError(
            "no target given",
            hint=f"pass --target NAME or --all (deploy.yaml targets: {known})"
            if known
            else "pass --target PLUGIN with -C key=value settings, or write a deploy.yaml",
        )
    return names


# --- progress, retries, concurrency ----------------------------------------------------------


class StreamProgress(Progress):
    """Progress lines on stderr prefixed with the target's name; silent when ``quiet``.

    Once ``cancelled`` is set, raises :class:`KeyboardInterrupt` in the worker at its next
    :meth:`advance` or :meth:`heartbeat`, so an interrupted multi-target deploy stops every
    target the way Ctrl-C stops one.
    """

    def __init__(
        self, target: str, *, quiet: bool, cancelled: threading.Event | None = None
    ) -> None:
        self.target = target
        self.quiet = quiet
        self.cancelled = cancelled or threading.Event()
        self._last = 0.0

    def _say(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(configuration.redact(f"[{self.target}] {text}") + "\n")
            sys.stderr.flush()

    def step(self, message: str) -> None:
        """Print the step."""
        self._say(message)

    def advance(self, done: int, total: int) -> None:
        """Print the share done, at most twice a second and at the end."""
        now = time.monotonic()
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        if done >= total or now - self._last >= 0.5:
            self._last = now
            percent = 100 * done // total if total else 100
            self._say(f"{percent:3d}% ({done} of {total} bytes)")

    def log(self, line: str) -> None:
        """Print a remote log line."""
        self._say(f"| {line}")

    def heartbeat(self, waited: float) -> None:
        """Print a line every ten seconds of waiting."""
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        now = time.monotonic()
        if waited >= 10 and now - self._last >= 10:
            self._last = now
            self._say(f"still waiting ({waited:.0f} s)")


def with_retries(call: Callable[[], T], *, timeout: float, progress: Progress | None = None) -> T:
    """Run ``call``, retrying :class:`TransientError` with exponential backoff until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            return call()
        except TransientError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransientError(
                    f"{exc.message} (still failing after {timeout:g} s of retries)", hint=exc.hint
                ) from exc
            if progress is not None:
                progress.step(f"{exc.message}; retrying in {min(delay, left):.1f} s")
            time.sleep(min(delay, left))
            delay = min(delay * 2, 10.0)


def _run_each(
    names: Sequence[str],
    work: Callable[[str, Progress], T],
    *,
    quiet: bool,
) -> Report[T]:
    cancelled = threading.Event()

    def one(name: str) -> Outcome[T]:
        progress = StreamProgress(name, quiet=quiet, cancelled=cancelled)
        try:
            return Outcome(name, result=work(name, progress))
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


def _each_target(
    project: Project,
    names: Sequence[str],
    overrides: Mapping[str, Any] | None,
    call: Callable[[AnyTarget], T],
    timeout: float,
    quiet: bool,
) -> Report[T]:
    """Open each target in turn (concurrently for several), run ``call`` with retries."""

    def work(n: str, progress: Progress) -> T:
        with _opened(project, n, overrides, progress) as t:
            return with_retries(lambda: call(t), timeout=timeout, progress=progress)

    return _run_each(names, work, quiet=quiet)


@contextmanager
def _opened(
    project: Project, name: str, overrides: Mapping[str, Any] | None, progress: Progress
) -> Iterator[AnyTarget]:
    target = project.open_target(name, overrides=overrides, progress=progress)
    try:
        yield target
    finally:
        target.close()


# --- the operations --------------------------------------------------------------------------


def deploy(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | Sequence[str] | None = None,
    all_targets: bool = False,
    config: str | os.PathLike[str] | None = None,
    name: str | None = None,
    version: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    validate: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    quiet: bool = True,
    raise_on_error: bool = True,
) -> Report[DeployResult]:
    """Validate, package and deploy a SavedModel to one or more targets.

    ``path`` defaults to deploy.yaml's ``model.path``; ``target`` is a deploy.yaml target name
    or a plugin name (its settings then come from ``overrides``), or a list of them;
    ``all_targets`` adds every deploy.yaml target. Targets whose serving digest already equals
    the model's are left alone without packaging anything. Returns a :class:`Report`; with
    ``raise_on_error`` a failed target raises its error instead.

    Example::

        tfdeploy.deploy("savedmodel", target="tfserving", name="digits",
                        overrides={"base_path": "/srv/models"})
    """
    from tfdeploy.savedmodel import read_model_info

    project = open_project(config, model_path=path, name=name)
    names = _target_names(project, target, all_targets)
    model_path = project.require_model()
    info = read_model_info(model_path)
    shared: dict[str, Any] = {}
    lock = threading.Lock()
    # Open every target first, so a configuration error stops everything before any work.
    opened = [project.open_target(n, overrides=overrides) for n in names]
    checks = [c for t in opened for found in _target_checks(project, t) for c in found]
    for t in opened:
        t.close()

    def bundle_for(progress: Progress) -> Any:
        with lock:
            if "error" in shared:
                raise shared["error"]
            if "bundle" not in shared:
                try:
                    if validate:
                        progress.step("validating the model")
                        _validate(project, model_path, checks)
                    from tfdeploy.bundle import package

                    tmp = tempfile.mkdtemp(prefix="tfdeploy-deploy-")
                    shared["tmp"] = tmp
                    progress.step("packaging the model")
                    assert project.model_name is not None
                    shared["bundle"] = package(
                        model_path, name=project.model_name, version=version or 1, output_dir=tmp
                    )
                except TfdeployError as exc:
                    shared["error"] = exc
                    raise
            return shared["bundle"]

    def work(n: str, progress: Progress) -> DeployResult:
        with _opened(project, n, overrides, progress) as t:
            current = with_retries(t.status, timeout=timeout, progress=progress)
            if current.digest == info.digest and current.state in ("serving", "unknown"):
                progress.step(f"version {current.version} has this digest already; nothing to do")
                return DeployResult(status=current, changed=False, message="unchanged")
            bundle = bundle_for(progress)
            result = with_retries(lambda: t.deploy(bundle), timeout=timeout, progress=progress)
            progress.step(result.message or "done")
            return result

    try:
        report = _run_each(names, work, quiet=quiet)
    finally:
        if "tmp" in shared:
            import shutil

            shutil.rmtree(shared["tmp"], ignore_errors=True)
    if raise_on_error:
        report.raise_for_errors()
    return report


def _target_checks(project: Project, target: AnyTarget) -> list[list[Any]]:
    """The validation checks plugins add for ``target`` (the ``target_checks`` hook)."""
    return [
        list(found) for found in project.plugins.manager.hook.target_checks(target=target) if found
    ]


def _validate(project: Project, model_path: Path, checks: Sequence[Any]) -> None:
    from tfdeploy.validate import validate as run_validate

    report = run_validate(
        model_path,
        instances=project.instances,
        signature_name=project.signature,
        extra_checks=checks,
    )
    if not report.ok:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in report.checks if c.status == "FAIL")
        raise TargetError(
            f"the model did not pass validation: {failed}",
            hint=f"run tfdeploy validate {model_path} for details",
        )


def plan(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | Sequence[str] | None = None,
    all_targets: bool = False,
    config: str | os.PathLike[str] | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    quiet: bool = True,
) -> Report[Plan]:
    """What a deploy would do on each target, touching nothing and importing no TensorFlow."""
    from tfdeploy.bundle import Bundle, Manifest
    from tfdeploy.savedmodel import read_model_info

    project = open_project(config, model_path=path, name=name)
    names = _target_names(project, target, all_targets)
    info = read_model_info(project.require_model())
    assert project.model_name is not None
    # Targets plan from the manifest; no archive is written.
    bundle = Bundle(
        path=Path(info.path), manifest=Manifest.for_model(info, name=project.model_name, version=1)
    )

    return _each_target(project, names, overrides, lambda t: t.plan(bundle), timeout, quiet)


def status(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    config: str | os.PathLike[str] | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
    quiet: bool = True,
) -> Report[Status]:
    """What runs on each target: model, version, digest, state and URL.

    With neither ``target`` nor ``all_targets``, every deploy.yaml target is asked.
    """
    project = open_project(config, name=name)
    names = _target_names(project, target, all_targets or not target)

    return _each_target(project, names, overrides, lambda t: t.status(), timeout, quiet)


def predict_target(
    instances: Any,
    target: str,
    *,
    config: str | os.PathLike[str] | None = None,
    signature_name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send ``instances`` (or a whole request) to a target and return its contract answer."""
    from tfdeploy import contract

    project = open_project(config)
    body = contract.as_request(instances, signature_name or project.signature)
    with _opened(project, target, overrides, Progress()) as t:
        return with_retries(lambda: t.predict(body), timeout=timeout)


def is_target(name: str, *, config: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``name`` is a target of deploy.yaml (``config``, or ./deploy.yaml)."""
    found = configuration.find(config) if config is not None else configuration.find()
    return found is not None and name in configuration.load(found).targets


def predict_instances(
    instances: Any,
    target: str,
    *,
    config: str | os.PathLike[str] | None = None,
    signature_name: str | None = None,
    batch_size: int = 512,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> Predictions:
    """Predict ``instances`` through a target, ``batch_size`` instances per request."""
    from tfdeploy import contract
    from tfdeploy.predictions import Predictions

    project = open_project(config)
    body = contract.as_request(instances, signature_name or project.signature)
    with _opened(project, target, overrides, Progress()) as t:
        if "inputs" in body:
            answer = with_retries(lambda: t.predict(body), timeout=timeout)
            return Predictions.from_answer({"predictions": answer.get("outputs", [])})
        contract.check_not_empty(body["instances"])
        rows: list[Any] = []
        for start in range(0, len(body["instances"]), batch_size):
            chunk = dict(body, instances=body["instances"][start : start + batch_size])
            answer = with_retries(functools.partial(t.predict, chunk), timeout=timeout)
            rows.extend(answer["predictions"])
    return Predictions.from_answer({"predictions": rows})


def verify(
    target: str | Sequence[str] | None = None,
    *,
    all_targets: bool = False,
    config: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    instances: Any = None,
    tolerance: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    quiet: bool = True,
) -> Report[Verification]:
    """Send the example instances to each target and compare with the local model's answers."""
    from tfdeploy import contract
    from tfdeploy.runtime import LoadedModel

    project = open_project(config, model_path=path)
    names = _target_names(project, target, all_targets or not target)
    examples = instances if instances is not None else project.instances
    if examples is None:
        raise ConfigError(
            "verify needs example instances",
            hint="set model.instances in deploy.yaml, or pass --input FILE",
        )
    body = contract.as_request(examples, project.signature)
    expected = LoadedModel(project.require_model()).predict(body)
    limit = project.tolerance if tolerance is None else tolerance
    count = len(body["instances"]) if "instances" in body else 1

    def work(n: str, progress: Progress) -> Verification:
        with _opened(project, n, overrides, progress) as t:
            got = with_retries(lambda: t.predict(body), timeout=timeout, progress=progress)
        return Verification(n, limit, count, tuple(compare(expected, got, limit)))

    return _run_each(names, work, quiet=quiet)


def compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], tolerance: float
) -> list[OutputComparison]:
    """Per-output largest absolute difference between two contract answers."""
    import numpy as np

    def columns(answer: Mapping[str, Any]) -> dict[str, Any]:
        if "predictions" in answer:
            rows = answer["predictions"]
            if rows and isinstance(rows[0], Mapping):
                return {k: [r.get(k) for r in rows] for k in rows[0]}
            return {"predictions": rows}
        outputs = answer.get("outputs")
        return dict(outputs) if isinstance(outputs, Mapping) else {"outputs": outputs}

    want, have = columns(expected), columns(got)
    out = []
    for key in sorted(set(want) | set(have)):
        if key not in want or key not in have:
            out.append(OutputComparison(key, float("inf"), False))
            continue
        try:
            a = np.asarray(want[key], dtype=np.float64)
            b = np.asarray(have[key], dtype=np.float64)
            diff = (
                float(np.max(np.abs(a - b)))
                if a.shape == b.shape and a.size
                else (0.0 if a.shape == b.shape else float("inf"))
            )
        except (TypeError, ValueError):
            diff = 0.0 if want[key] == have[key] else float("inf")
        out.append(OutputComparison(key, diff, bool(diff <= tolerance)))
    return out


def undeploy(
    target: str | Sequence[str],
    *,
    config: str | os.PathLike[str] | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
    quiet: bool = True,
) -> Report[Status]:
    """Remove the deployment from each target."""
    project = open_project(config, name=name)
    names = _target_names(project, target, False)

    return _each_target(project, names, overrides, lambda t: t.undeploy(), timeout, quiet)


def rollback(
    target: str | Sequence[str],
    *,
    to: str | None = None,
    config: str | os.PathLike[str] | None = None,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float = 300.0,
    quiet: bool = True,
) -> Report[Status]:
    """Serve the previous version again (or version/label ``to``) on each target."""
    project = open_project(config, name=name)
    names = _target_names(project, target, False)

    return _each_target(project, names, overrides, lambda t: t.rollback(to), timeout, quiet)
