"""The models a server holds: names, versions, labels, loading, polling and unloading.

A :class:`ModelRepository` serves one or more models. Each model is either one SavedModel
directory (served as version 1) or, as in TF Serving, a base path of integer version folders
that is polled: a new folder is loaded once it is complete (its files unchanged between two
polls), and only after it serves is a version that the policy no longer wants unloaded, after
its queued requests finish. Requests resolve a :class:`Servable` and keep it until they answer.

Configuration comes from TF Serving's text ``ModelServerConfig`` (``--model-config-file``) and
can be replaced whole at run time (``ModelService.HandleReloadConfigRequest``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tfdeploy.errors import (
    ConfigError,
    DependencyError,
    InvalidInputError,
    ModelNotFoundError,
    ServableNotFoundError,
    TfdeployError,
)
from tfdeploy.model.savedmodel import is_savedmodel_dir, resolve_model_dir, version_dirs
from tfdeploy.model.signatures import Signature
from tfdeploy.server.batching import Batcher, BatchingOptions, ClosedError, Outputs
from tfdeploy.server.metrics import Metrics

log = logging.getLogger("tfdeploy.server")

#: TF Serving's default model name.
DEFAULT_MODEL_NAME = "default"
#: Version states, as TF Serving names them (ModelVersionStatus.State).
State = Literal["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve: the latest N, all, or specific ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> set[int]:
        """The versions to serve among those on disk."""
        found = sorted(on_disk)
        if self.kind == "all":
            return set(found)
        if self.kind == "specific":
            return set(found) & set(self.versions)
        return set(found[-max(1, self.num_versions) :])


@dataclass(frozen=True)
class ModelConfig:
    """One model: its name, base path, version policy and version labels.

    ``fixed`` marks a single SavedModel directory served as version 1 and never polled.
    """

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)
    fixed: bool = False

    @classmethod
    def for_path(cls, path: str | os.PathLike[str], name: str | None = None) -> ModelConfig:
        """A model from what a user points at: a SavedModel directory or a base path."""
        p = Path(path).expanduser()
        if p.is_dir() and not is_savedmodel_dir(p) and version_dirs(p):
            return cls(name or DEFAULT_MODEL_NAME, p.resolve())
        return cls(name or DEFAULT_MODEL_NAME, resolve_model_dir(p).resolve(), fixed=True)


def _config_pb2() -> Any:
    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:
        raise DependencyError(
            "tensorflow-serving-api is needed for model config files",
            hint="pip install 'tfdeploy-kit[serve]'",
        ) from exc
    return model_server_config_pb2


def parse_config_text(text: str, *, relative_to: Path | None = None) -> list[ModelConfig]:
    """Parse TF Serving's text-format ``ModelServerConfig`` into model configs."""
    from google.protobuf import text_format

    proto = _config_pb2().ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"the model config file is not a valid ModelServerConfig: {exc}") from exc
    return configs_from_proto(proto, relative_to=relative_to)


def read_config_file(path: str | os.PathLike[str]) -> list[ModelConfig]:
    """Read a ``--model-config-file``; relative base paths are taken from the file's folder."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the model config file {p}: {exc.strerror}") from exc
    return parse_config_text(text, relative_to=p.resolve().parent)


def configs_from_proto(proto: Any, *, relative_to: Path | None = None) -> list[ModelConfig]:
    """Model configs from a ``ModelServerConfig`` message (as a reload request carries it)."""
    if proto.WhichOneof("config") not in (None, "model_config_list"):
        raise ConfigError("only model_config_list configurations are supported")
    configs = []
    for c in proto.model_config_list.config:
        if not c.name or not c.base_path:
            raise ConfigError("every model config needs a name and a base_path")
        if c.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"model {c.name!r}: model_platform must be 'tensorflow'")
        choice = c.model_version_policy.WhichOneof("policy_choice")
        if choice == "all":
            policy = VersionPolicy("all")
        elif choice == "specific":
            policy = VersionPolicy(
                "specific", versions=tuple(c.model_version_policy.specific.versions)
            )
        else:
            n = c.model_version_policy.latest.num_versions if choice == "latest" else 1
            policy = VersionPolicy("latest", num_versions=max(1, n))
        base = Path(c.base_path).expanduser()
        if not base.is_absolute() and relative_to is not None:
            base = relative_to / base
        configs.append(
            ModelConfig(c.name, base, policy, {str(k): int(v) for k, v in c.version_labels.items()})
        )
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError("model names in a config must be unique")
    return configs


class Servable:
    """One loaded model version and its request queue."""

    def __init__(
        self, name: str, version: int, model: Any, options: BatchingOptions, metrics: Metrics
    ) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.batcher = Batcher(model.run, options, name=f"{name}/{version}", metrics=metrics)
        # Read once: a loaded version's signatures never change, and every request needs them.
        self._signatures: Mapping[str, Signature] = model.signatures

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """The version's serving signatures."""
        return self._signatures

    @property
    def meta_graph_def(self) -> Any:
        """The ``MetaGraphDef`` TensorFlow loaded (``None`` for a model that has none)."""
        return getattr(self.model, "meta_graph_def", None)

    def submit(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        size: int | None,
        loop: asyncio.AbstractEventLoop | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> Any:
        """Queue a prepared request; see :meth:`Batcher.submit`."""
        return self.batcher.submit(signature, inputs, size, loop=loop, outputs=outputs)

    def release(self) -> None:
        """Drop the loaded model once the batcher is closed, so its memory can be freed even
        while something (a request that resolved this version) still holds the servable."""
        model, self.model = self.model, None
        self.batcher.release()
        if model is not None:
            model.close()


@dataclass
class VersionStatus:
    """What TF Serving reports about one version."""

    version: int
    state: State
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple[Any, ...] = ()


@dataclass
class _Model:
    config: ModelConfig
    versions: dict[int, VersionStatus] = field(default_factory=dict)
    seen: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # fingerprints at last poll


def _collect_and_freeze() -> None:
    """Collect garbage, then freeze what survives, after a version is loaded or unloaded.

    TensorFlow leaves a large heap of long-lived objects; frozen, full collections skip it and
    no longer stall requests for tens of milliseconds. Frozen objects are never collected, so
    everything is thawed first: an unloaded version's objects (and the memory its tensors
    hold) are freed here instead of staying frozen for the life of the process.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _trim_malloc()


def _trim_malloc() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _fingerprint(path: Path) -> tuple[Any, ...]:
    items = []
    for f in sorted(path.rglob("*")):
        try:
            st = f.stat()
        except OSError:  # removed while we looked: not complete
            continue
        items.append((f.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(items)


Loader = Callable[[Path], Any]


def _load_model(path: Path) -> Any:
    from tfdeploy.predict.runtime import LoadedModel

    return LoadedModel(path)


class ModelRepository:
    """Models by name, their versions and labels, kept in step with the disk by polling."""

    def __init__(
        self,
        configs: Iterable[ModelConfig],
        *,
        options: BatchingOptions | None = None,
        metrics: Metrics | None = None,
        poll_seconds: float = 1.0,
        loader: Loader = _load_model,
    ) -> None:
        self.options = options or BatchingOptions()
        self.metrics = metrics or Metrics()
        self.poll_seconds = poll_seconds
        self._loader = loader
        self._models: dict[str, _Model] = {c.name: _Model(c) for c in configs}
        if not self._models:
            raise ConfigError("no model to serve")
        self._order = list(self._models)
        self._lock = threading.Lock()  # guards the state that requests read
        self._reconcile_lock = threading.Lock()  # one reconciliation (poll or reload) at a time
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.metrics.add_gauge(
            "tfdeploy_queue_depth", "Requests waiting for a model call.", self.queue_depth
        )

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Load every model's versions now, then poll base paths in the background."""
        with self._reconcile_lock:
            for model in list(self._models.values()):
                self._reconcile(model, initial=True)
                self._check_labels(model)
        failed = [
            f"{m.config.name} version {v.version}: {v.error_message}"
            for m in self._models.values()
            for v in m.versions.values()
            if v.error_code != "OK"
        ]
        if failed:
            self.close()
            raise ModelNotFoundError("could not load " + "; ".join(failed))
        for m in self._models.values():
            if any(v.state == "AVAILABLE" for v in m.versions.values()):
                continue
            if m.config.fixed or self.poll_seconds <= 0 or not m.config.base_path.is_dir():
                self.close()
                raise ModelNotFoundError(
                    f"model {m.config.name!r}: no SavedModel version to serve under "
                    f"{m.config.base_path}",
                    hint="a base path holds integer version folders, e.g. <base>/1/saved_model.pb",
                )
            # As TF Serving does: an empty base path is served once a version appears in it.
            log.warning(
                "no versions of model %r under %s yet; waiting for one to appear",
                m.config.name,
                m.config.base_path,
            )
        if self.poll_seconds > 0 and any(not m.config.fixed for m in self._models.values()):
            self._poller = threading.Thread(
                target=self._poll_loop, name="tfdeploy-poll", daemon=True
            )
            self._poller.start()

    def close(self) -> None:
        """Stop polling and unload every version after its queued requests finish."""
        self._stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join()
        with self._reconcile_lock:
            for model in self._models.values():
                for status in list(model.versions.values()):
                    self._unload(model, status)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll_once()

    def poll_once(self) -> None:
        """Look at every base path once: load complete new versions, unload unwanted ones."""
        with self._reconcile_lock:
            for model in list(self._models.values()):
                if not model.config.fixed and not self._stop.is_set():
                    try:
                        self._reconcile(model, initial=False)
                    except Exception:  # a bad folder must not stop polling
                        log.exception("polling %s failed", model.config.base_path)

    def apply_config(self, configs: list[ModelConfig]) -> None:
        """Replace the whole configuration: load new models and versions, unload the rest.

        Blocks until the configured versions are loaded; labels must name loaded versions.
        """
        names = [c.name for c in configs]
        if not names:
            raise ConfigError("a model server config needs at least one model")
        with self._reconcile_lock:
            previous = {n: m.config for n, m in self._models.items()}
            with self._lock:
                for c in configs:
                    if c.name in self._models:
                        self._models[c.name].config = c
                    else:
                        self._models[c.name] = _Model(c)
                self._order = names
            removed = [m for n, m in self._models.items() if n not in names]
            for c in configs:
                self._reconcile(self._models[c.name], initial=True)
            for model in removed:
                for status in list(model.versions.values()):
                    self._unload(model, status)
                with self._lock:
                    del self._models[model.config.name]
            for c in configs:
                model = self._models[c.name]
                try:
                    self._check_labels(model)
                except ConfigError:
                    # Versions are loaded as asked; the labels keep their previous meaning.
                    old = previous.get(c.name)
                    with self._lock:
                        model.config = replace(c, labels=old.labels if old else {})
                    raise

    # --- reconciliation -------------------------------------------------------------------

    def _on_disk(self, config: ModelConfig) -> dict[int, Path]:
        if config.fixed:
            return {1: config.base_path}
        return {v: d for v, d in version_dirs(config.base_path).items() if is_savedmodel_dir(d)}

    def _reconcile(self, model: _Model, *, initial: bool) -> None:
        config = model.config
        on_disk = self._on_disk(config)
        wanted = config.policy.select(on_disk)
        for version in sorted(wanted):
            current = model.versions.get(version)
            if current is not None and current.state == "AVAILABLE":
                continue
            fp = _fingerprint(on_disk[version])
            if current is not None and current.error_code != "OK" and current.fingerprint == fp:
                continue  # failed before and unchanged since: do not retry every poll
            if not initial and model.seen.get(version) != fp:
                model.seen[version] = fp  # appeared or changed since the last poll: wait
                continue
            self._load(model, version, on_disk[version], fp)
        model.seen = {v: s for v, s in model.seen.items() if v in on_disk}
        serving_wanted = any(
            s.state == "AVAILABLE" for v, s in model.versions.items() if v in wanted
        )
        for version, status in list(model.versions.items()):
            if status.state != "AVAILABLE" or version in wanted:
                continue
            # Keep an old version while none of the wanted ones serves, unless it left the disk.
            if serving_wanted or version not in on_disk:
                self._unload(model, status)

    def _load(self, model: _Model, version: int, path: Path, fp: tuple[Any, ...]) -> None:
        name = model.config.name
        status = VersionStatus(version, "LOADING", fingerprint=fp)
        with self._lock:
            model.versions[version] = status
        log.info("loading %s version %d from %s", name, version, path)
        try:
            servable = Servable(name, version, self._loader(path), self.options, self.metrics)
        except Exception as exc:
            message = exc.message if isinstance(exc, TfdeployError) else str(exc)
            log.error("could not load %s version %d: %s", name, version, message)
            with self._lock:
                status.state, status.error_code, status.error_message = "END", "UNKNOWN", message
            return
        with self._lock:
            status.servable, status.state = servable, "AVAILABLE"
        _collect_and_freeze()

    def _unload(self, model: _Model, status: VersionStatus) -> None:
        servable = status.servable
        with self._lock:
            status.state = "UNLOADING"
        if servable is not None:
            log.info("unloading %s version %d", model.config.name, status.version)
            servable.batcher.close()  # finishes the queued requests first
        with self._lock:
            status.state, status.servable = "END", None
        if servable is not None:
            servable.release()
            del servable
            _collect_and_freeze()

    def _check_labels(self, model: _Model) -> None:
        for label, version in model.config.labels.items():
            status = model.versions.get(version)
            if status is None or status.state != "AVAILABLE":
                raise ConfigError(
                    f"label {label!r} of model {model.config.name!r} points at version {version}, "
                    "which is not loaded",
                    hint="labels may only name versions that serve",
                )

    # --- requests -------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The served models' names, in configuration order."""
        return list(self._order)

    @property
    def default_name(self) -> str:
        """The model that routes without a model name (``/<signature>/predict``) use."""
        return DEFAULT_MODEL_NAME if DEFAULT_MODEL_NAME in self._models else self._order[0]

    @property
    def ready(self) -> bool:
        """Whether every model has a version that serves."""
        return all(
            any(v.state == "AVAILABLE" for v in m.versions.values()) for m in self._models.values()
        )

    def queue_depth(self) -> float:
        """Requests waiting across every loaded version."""
        return float(
            sum(
                v.servable.batcher.depth
                for m in list(self._models.values())
                for v in list(m.versions.values())
                if v.servable is not None
            )
        )

    def resolve(
        self, name: str | None = None, version: int | None = None, label: str | None = None
    ) -> Servable:
        """The servable a request names: a version, a label, or else the latest."""
        name = name or self.default_name
        if version is not None and label is not None:
            raise InvalidInputError("a request may name a version or a label, not both")
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = _label_version(model, label)
            if model is None:
                what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
                raise ServableNotFoundError(f"Servable not found for request: {what}")
            if version is not None:
                status = model.versions.get(version)
                if status is None or status.servable is None or status.state != "AVAILABLE":
                    raise ServableNotFoundError(
                        f"Servable not found for request: Specific({name}, {version})"
                    )
                return status.servable
            available = [
                v for v in model.versions.values() if v.state == "AVAILABLE" and v.servable
            ]
            if not available:
                raise ServableNotFoundError(f"Servable not found for request: Latest({name})")
            servable = max(available, key=lambda v: v.version).servable
            assert servable is not None
            return servable

    def submit(
        self,
        servable: Servable,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        size: int | None,
        *,
        name: str | None = None,
        version: int | None = None,
        label: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> Any:
        """Queue a request on ``servable``; if it was unloaded meanwhile, on what serves now.

        Returns a future: an asyncio future of ``loop`` when given, else a concurrent one.
        ``outputs`` names the outputs to fetch (all of the signature's by default).
        """
        try:
            return servable.submit(signature, inputs, size, loop, outputs)
        except ClosedError:
            retry = self.resolve(name, version, label)
            return retry.submit(signature, inputs, size, loop, outputs)

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        signature: str,
        size: int | None,
        *,
        name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> Outputs:
        """Resolve, queue and wait: the blocking form for threads."""
        servable = self.resolve(name, version, label)
        future = self.submit(
            servable, signature, inputs, size, name=name, version=version, label=label
        )
        outputs: Outputs = future.result()
        return outputs

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """TF Serving's model status: every version (newest first), or the one asked for."""
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = _label_version(model, label)
            if model is None or not model.versions:
                if version is not None:
                    raise ServableNotFoundError(f"Could not find version {version} of model {name}")
                raise ServableNotFoundError(f"Could not find any versions of model {name}")
            if version is not None:
                status = model.versions.get(version)
                if status is None:
                    raise ServableNotFoundError(f"Could not find version {version} of model {name}")
                return [status]
            return sorted(model.versions.values(), key=lambda s: -s.version)


def _label_version(model: _Model | None, label: str) -> int:
    """The version a label names; an unknown label is INVALID_ARGUMENT, as in TF Serving."""
    if model is None or label not in model.config.labels:
        raise ServableNotFoundError(
            f"Unrecognized servable version label: {label}",
            code="INVALID_ARGUMENT",
            hint="use a label of the model config's version_labels, or a version number",
        )
    return model.config.labels[label]
