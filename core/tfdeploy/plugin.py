"""Everything a deploy-target plugin needs, in one import.

A target plugin imports tfdeploy through this module (and :mod:`tfdeploy.testing` in its
tests) and nothing else, so the core can be rearranged without breaking plugins::

    from tfdeploy.plugin import (
        Bundle, DeployResult, RegisterTarget, Status, Target, TargetConfig, TargetError, hookimpl,
    )

    class FooTarget(Target["FooConfig"]):
        ...

    @hookimpl
    def register_targets(register: RegisterTarget) -> None:
        register("foo", FooTarget)

What is here:

- the hooks: :data:`hookimpl`, :class:`RegisterTarget` (``register_targets`` and
  ``target_checks`` are described in :mod:`tfdeploy.deployment.hookspecs`);
- the target contract: :class:`Target` (its docstring states the rules), :class:`TargetConfig`,
  the results :class:`Status`, :class:`VersionStatus`, :class:`Plan`, :class:`DeployResult`
  and their :data:`State` and :data:`Action`, and :class:`Progress` for long steps;
- the model: :class:`Bundle` (manifest, ``model_dir``, ``path``), :class:`Manifest`,
  :class:`ModelInfo`, :class:`Signature`, :class:`TensorSpec`, :func:`read_model_info`,
  :func:`model_files`, :func:`content_digest`, the dtype tables, and :func:`write_archive`
  (a ``.tar.gz`` whose bytes depend only on its entries);
- validation checks a plugin adds: :class:`Check`, :data:`ExtraCheck`, :data:`Verdict`;
- errors: the classes a target raises, and :func:`from_http_status`,
  :func:`from_grpc_status` and :func:`from_connection_error`, the one mapping of remote
  statuses to errors;
- the wire contract: the module :mod:`wire <tfdeploy.predict.wire>` (``prepare``, ``answer``,
  ``dumps``, ``loads``), :func:`request_json` and :func:`request`, the one HTTP helper,
  :func:`time_left` (the timeout a remote call may take within the operation's
  :func:`deadline`), and :func:`load_savedmodel` for targets that predict in-process;
- secrets: :func:`add_secret` for a credential the target holds, :func:`looks_secret` (whether
  a setting's name says it holds one), :func:`redact` to mask them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfdeploy import _lazy

if TYPE_CHECKING:
    from tfdeploy.deployment.hookspecs import RegisterTarget, hookimpl
    from tfdeploy.deployment.target import (
        Action,
        DeployResult,
        Plan,
        Progress,
        State,
        Status,
        Target,
        TargetConfig,
        VersionStatus,
    )
    from tfdeploy.errors import (
        ConfigError,
        DependencyError,
        InvalidInputError,
        PredictionError,
        RemoteError,
        ServableNotFoundError,
        TargetError,
        TfdeployError,
        TransientError,
        UnsupportedError,
        from_connection_error,
        from_grpc_status,
        from_http_status,
    )
    from tfdeploy.model.bundle import Bundle, Manifest, write_archive
    from tfdeploy.model.savedmodel import (
        SAVED_MODEL_PB,
        SAVED_MODEL_PBTXT,
        content_digest,
        model_files,
        read_model_info,
    )
    from tfdeploy.model.signatures import (
        DEFAULT_SIGNATURE,
        DTYPE_FOR_NUMPY,
        DTYPE_NAMES,
        DTYPE_NUMBERS,
        NUMPY_DTYPES,
        ModelInfo,
        Signature,
        TensorSpec,
    )
    from tfdeploy.predict import wire
    from tfdeploy.predict.http import deadline, request, request_json, time_left
    from tfdeploy.predict.runtime import LoadedModel, load_savedmodel
    from tfdeploy.predict.validate import Check, ExtraCheck, Verdict
    from tfdeploy.secrets import add_secret, looks_secret, redact

#: Public name -> module that defines it. Names are imported on first use (PEP 562), so a
#: plugin that registers a target does not make ``tfdeploy status`` import numpy.
_EXPORTS = {
    **dict.fromkeys(["RegisterTarget", "hookimpl"], "tfdeploy.deployment.hookspecs"),
    **dict.fromkeys(
        [
            "Action",
            "DeployResult",
            "Plan",
            "Progress",
            "State",
            "Status",
            "Target",
            "TargetConfig",
            "VersionStatus",
        ],
        "tfdeploy.deployment.target",
    ),
    **dict.fromkeys(
        [
            "ConfigError",
            "DependencyError",
            "InvalidInputError",
            "PredictionError",
            "RemoteError",
            "ServableNotFoundError",
            "TargetError",
            "TfdeployError",
            "TransientError",
            "UnsupportedError",
            "from_connection_error",
            "from_grpc_status",
            "from_http_status",
        ],
        "tfdeploy.errors",
    ),
    **dict.fromkeys(["Bundle", "Manifest", "write_archive"], "tfdeploy.model.bundle"),
    **dict.fromkeys(
        ["SAVED_MODEL_PB", "SAVED_MODEL_PBTXT", "content_digest", "model_files", "read_model_info"],
        "tfdeploy.model.savedmodel",
    ),
    **dict.fromkeys(
        [
            "DEFAULT_SIGNATURE",
            "DTYPE_FOR_NUMPY",
            "DTYPE_NAMES",
            "DTYPE_NUMBERS",
            "NUMPY_DTYPES",
            "ModelInfo",
            "Signature",
            "TensorSpec",
        ],
        "tfdeploy.model.signatures",
    ),
    "wire": "tfdeploy.predict",
    **dict.fromkeys(["deadline", "request", "request_json", "time_left"], "tfdeploy.predict.http"),
    **dict.fromkeys(["LoadedModel", "load_savedmodel"], "tfdeploy.predict.runtime"),
    **dict.fromkeys(["Check", "ExtraCheck", "Verdict"], "tfdeploy.predict.validate"),
    **dict.fromkeys(["add_secret", "looks_secret", "redact"], "tfdeploy.secrets"),
}

__all__ = [
    "DEFAULT_SIGNATURE",
    "DTYPE_FOR_NUMPY",
    "DTYPE_NAMES",
    "DTYPE_NUMBERS",
    "NUMPY_DTYPES",
    "SAVED_MODEL_PB",
    "SAVED_MODEL_PBTXT",
    "Action",
    "Bundle",
    "Check",
    "ConfigError",
    "DependencyError",
    "DeployResult",
    "ExtraCheck",
    "InvalidInputError",
    "LoadedModel",
    "Manifest",
    "ModelInfo",
    "Plan",
    "PredictionError",
    "Progress",
    "RegisterTarget",
    "RemoteError",
    "ServableNotFoundError",
    "Signature",
    "State",
    "Status",
    "Target",
    "TargetConfig",
    "TargetError",
    "TensorSpec",
    "TfdeployError",
    "TransientError",
    "UnsupportedError",
    "Verdict",
    "VersionStatus",
    "add_secret",
    "content_digest",
    "deadline",
    "from_connection_error",
    "from_grpc_status",
    "from_http_status",
    "hookimpl",
    "load_savedmodel",
    "looks_secret",
    "model_files",
    "read_model_info",
    "redact",
    "request",
    "request_json",
    "time_left",
    "wire",
    "write_archive",
]

__getattr__, __dir__ = _lazy.exports("tfdeploy.plugin", _EXPORTS, globals())
