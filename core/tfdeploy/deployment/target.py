"""The contract every deploy target implements, and the typed results it returns.

A target plugin subclasses :class:`Target`, declares its deploy.yaml section as a
:class:`TargetConfig` subclass, and registers the class through the ``register_targets`` hook
(see :mod:`tfdeploy.deployment.hookspecs`). tfdeploy keeps no state of its own: what a target reports
through :meth:`Target.status` is the truth.
"""

from __future__ import annotations

import abc
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

from tfdeploy.errors import UnsupportedError
from tfdeploy.model.bundle import Bundle

#: What a deployed model is doing. ``serving``: answering predictions; ``pending``: being
#: loaded or rolled out; ``failed``: the target reports an error; ``absent``: nothing is
#: deployed; ``unknown``: files are in place but nothing can be asked whether they serve.
State = Literal["serving", "pending", "failed", "absent", "unknown"]

#: What a deploy would do: put the model there for the first time, replace what runs, nothing.
Action = Literal["create", "update", "noop"]


class TargetConfig(BaseModel):
    """Base of a target's typed configuration: its section of deploy.yaml minus ``plugin``.

    Unknown keys are an error. Declare credentials as :class:`pydantic.SecretStr` so they are
    never printed; give every field a ``description`` (``tfdeploy targets`` shows it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def describe_fields(cls) -> list[dict[str, Any]]:
        """Each field's name, type, default, whether it is required or secret, and its help."""
        out = []
        for name, info in cls.model_fields.items():
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump()
            out.append(
                {
                    "name": name,
                    "type": type_name(info.annotation),
                    "required": info.is_required(),
                    "default": default,
                    "secret": _is_secret(info.annotation),
                    "help": info.description or "",
                }
            )
        return out

    @classmethod
    def secret_fields(cls) -> list[str]:
        """Names of the fields that hold credentials."""
        return [n for n, i in cls.model_fields.items() if _is_secret(i.annotation)]


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type: ``int``, ``str | None``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "secret str"
    return getattr(annotation, "__name__", str(annotation))


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


@dataclass(frozen=True)
class VersionStatus:
    """One version a target holds: its id, digest, state, labels and traffic share."""

    version: str
    state: State
    digest: str | None = None
    labels: tuple[str, ...] = ()
    traffic_percent: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Status:
    """What runs on a target: the model, the version that answers, its digest, state and URL.

    ``version`` and ``digest`` describe the version that answers predictions by default;
    ``versions`` lists every version the target holds (with labels and, for cloud targets,
    the traffic split).
    """

    target: str
    plugin: str
    model: str
    state: State
    version: str | None = None
    digest: str | None = None
    url: str | None = None
    versions: tuple[VersionStatus, ...] = ()
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return asdict(self)


@dataclass(frozen=True)
class DeployResult:
    """The outcome of a deploy: whether anything changed, how much was sent, the new status."""

    status: Status
    changed: bool
    bytes_sent: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "changed": self.changed,
            "bytes_sent": self.bytes_sent,
            "message": self.message,
            "status": self.status.to_dict(),
        }


@dataclass(frozen=True)
class Plan:
    """What :meth:`Target.deploy` would do with a bundle, without doing it."""

    target: str
    action: Action
    current_version: str | None
    current_digest: str | None
    new_digest: str
    changes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return asdict(self)


class Progress:
    """Where a target reports what a long step is doing. The default reports nothing.

    The command line passes one that prints on a terminal, prefixed with the target's name,
    and stays quiet with ``--json``. Targets call it from whatever thread does the work.
    """

    def step(self, message: str) -> None:
        """A new step has started (``uploading``, ``waiting for the endpoint``...)."""

    def advance(self, done: int, total: int) -> None:
        """``done`` of ``total`` bytes (or units) of the current step are finished."""

    def log(self, line: str) -> None:
        """A line of a remote task's log (a cloud build, a server's task output)."""

    def heartbeat(self, waited: float) -> None:
        """Still waiting on something remote, for ``waited`` seconds; call it on every poll."""

    def retrying(self, message: str, delay: float) -> None:
        """A retryable failure (``message``); the operation tries again in ``delay`` seconds.

        The operations call it, not targets; the command line shows it only with ``--verbose``.
        """


C = TypeVar("C", bound=TargetConfig)


class Target(abc.ABC, Generic[C]):
    """A place a model can be deployed to. Subclasses state ``Config`` and implement the contract.

    The rules every target follows (the contract tests in :mod:`tfdeploy.testing.contract`
    check them):

    - :meth:`deploy` creates the deployment or updates it, and **blocks** until the new version
      serves or has failed, reporting long steps through :attr:`progress`.
    - It is **idempotent by bundle digest**: deploying a bundle whose digest is what already
      serves sends nothing, creates no version and returns ``changed=False``.
    - **On failure the previous version keeps serving**, for clients as well as on disk:
      nothing half-written ever becomes visible, a version that fails to load is withdrawn
      before the error is raised, and a deploy that cannot confirm the new version (its server
      cannot be reached, or does not serve this model) fails before the version can take
      traffic. Each target's docstring states exactly what it guarantees.
    - Being interrupted (Ctrl-C) counts as a failure; running the same deploy again completes it.
      :class:`KeyboardInterrupt` can come from anywhere, including :meth:`Progress.advance` and
      :meth:`Progress.heartbeat` when the operations cancel a multi-target deploy.
    - Failures worth retrying raise an error whose ``retryable`` is true
      (:class:`~tfdeploy.errors.TransientError`, or what :func:`~tfdeploy.errors.from_http_status`
      and :func:`~tfdeploy.errors.from_grpc_status` make of a 503), which the operations retry
      with backoff within their timeout; others raise :class:`~tfdeploy.errors.TargetError` with
      a hint. Secrets never appear in messages.
    - The model's files are read from ``bundle.model_dir`` (unpacked once for every target that
      asks); ``bundle.path`` is the ``.tar.gz`` archive, written when first asked for.
    - :meth:`predict` sends a request of the shared prediction contract
      (:mod:`tfdeploy.predict.wire`) through the target's own protocol and answers in it.
    - :meth:`status` reports what runs as a :class:`Status`, asking the target itself; a
      target it cannot reach raises that error (the command line then exits 1), it does not
      answer ``unknown``.
    - :meth:`rollback` (optional) serves an earlier version again: by default the one before
      the current, or the version or label ``to``. It **keeps the versions it replaces**, so
      ``rollback(to=<newer version>)`` serves them again (a roll forward), unless
      ``discard=True``, which deletes them. It blocks until the version serves, like
      :meth:`deploy`.

    Long-running cloud operations are waited for inside :meth:`deploy`, with their log lines
    sent to :meth:`Progress.log`; a traffic split belongs in the target's config and shows in
    :attr:`VersionStatus.traffic_percent`.
    """

    #: The typed configuration this target accepts.
    Config: ClassVar[type[TargetConfig]] = TargetConfig

    def __init__(
        self,
        config: C,
        *,
        name: str,
        model_name: str,
        plugin: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        #: The target's name in deploy.yaml (or the plugin name when given on the command line).
        self.name = name
        #: The model's name on the target.
        self.model_name = model_name
        #: The plugin name the target class was registered under.
        self.plugin = plugin or name
        self.progress = progress or Progress()

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring: what this target deploys to."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @abc.abstractmethod
    def deploy(self, bundle: Bundle) -> DeployResult:
        """Deploy ``bundle``; see the class docstring for the rules."""

    @abc.abstractmethod
    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a contract request (``instances`` or ``inputs``) with a contract answer."""

    @abc.abstractmethod
    def status(self) -> Status:
        """What is deployed, which version answers, its digest and state, and where."""

    def plan(self, bundle: Bundle) -> Plan:
        """What :meth:`deploy` would do with ``bundle``; the default compares digests.

        Only ``bundle.manifest`` is needed here (reading ``bundle.path`` would write an archive
        for nothing). A plan changes nothing.
        """
        current = self.status()
        digest = bundle.manifest.digest
        if current.state == "absent":
            return Plan(self.name, "create", None, None, digest, (f"create {self.model_name}",))
        if current.digest == digest:
            return Plan(self.name, "noop", current.version, current.digest, digest)
        return Plan(
            self.name,
            "update",
            current.version,
            current.digest,
            digest,
            (f"replace version {current.version} of {self.model_name}",),
        )

    def undeploy(self) -> Status:
        """Remove the deployment; optional."""
        raise UnsupportedError(f"target {self.plugin!r} cannot undeploy")

    def rollback(self, to: str | None = None, *, discard: bool = False) -> Status:
        """Serve the version before the current one again, or the version or label ``to``;
        optional.

        The versions replaced are kept for a roll forward (``to`` naming one of them), or
        deleted with ``discard``. See the class docstring.
        """
        raise UnsupportedError(f"target {self.plugin!r} cannot roll back")

    def close(self) -> None:
        """Release connections; called once an operation is done with the target."""
