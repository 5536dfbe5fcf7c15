"""``validate``: a list of checks on a SavedModel, each PASS, WARN or FAIL with a reason and a fix."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tfdeploy.errors import ModelNotFoundError, TfdeployError
from tfdeploy.model.savedmodel import read_model_info, resolve_model_dir, saved_model_file
from tfdeploy.model.signatures import DEFAULT_SIGNATURE, ModelInfo

#: How a check came out.
Verdict = Literal["PASS", "WARN", "FAIL", "SKIP"]

#: Tensor names TensorFlow makes up when nobody named the tensors.
_GENERATED_NAME = re.compile(r"^(output|args|inputs?)_\d+$")


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its name, status, why, and what to do about a failure."""

    name: str
    status: Verdict
    reason: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"name": self.name, "status": self.status, "reason": self.reason, "fix": self.fix}


#: An extra check supplied by a plugin: it sees the model's info and returns its checks.
ExtraCheck = Callable[[ModelInfo], Iterable[Check]]


@dataclass
class ValidationReport:
    """All checks run on one model; :attr:`ok` is false when any check failed."""

    path: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not any(c.status == "FAIL" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as ``tfdeploy validate --json`` prints it."""
        return {"path": self.path, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def validate(
    path: str | os.PathLike[str],
    *,
    instances: Any = None,
    signature_name: str = DEFAULT_SIGNATURE,
    extra_checks: Iterable[ExtraCheck] = (),
) -> ValidationReport:
    """Check that the SavedModel at ``path`` can be served; never raises for a bad model.

    With ``instances`` (a list of instances or a request body), a smoke prediction is run and
    its outputs must be finite. ``extra_checks`` come from deploy targets with constraints of
    their own.
    """
    report = ValidationReport(path=str(path))
    add = report.checks.append
    try:
        model_dir = resolve_model_dir(path)
    except ModelNotFoundError as exc:
        add(Check("saved_model.pb present", "FAIL", exc.message, exc.hint))
        return report
    report.path = str(model_dir)
    add(Check("saved_model.pb present", "PASS", f"found {saved_model_file(model_dir)}"))
    try:
        info = read_model_info(model_dir)
    except TfdeployError as exc:
        add(Check("saved_model.pb parses", "FAIL", exc.message, exc.hint))
        return report
    add(
        Check(
            "saved_model.pb parses",
            "PASS",
            f"{len(info.meta_graphs)} MetaGraph(s), written by TensorFlow "
            f"{info.tensorflow_version or 'of unknown version'}",
        )
    )
    serving = info.serving
    if serving is None:
        tags = [list(m.tags) for m in info.meta_graphs]
        add(
            Check(
                "serve tag present",
                "FAIL",
                f"no MetaGraph is tagged 'serve' (tags: {tags})",
                "save with tf.saved_model.save or export_savedmodel, which tag the graph 'serve'",
            )
        )
        return report
    add(Check("serve tag present", "PASS", f"tags {list(serving.tags)}"))
    report.checks.extend(_signature_checks(info))
    for extra in extra_checks:
        report.checks.extend(extra(info))
    report.checks.extend(_runtime_checks(info, instances, signature_name))
    return report


def _signature_checks(info: ModelInfo) -> list[Check]:
    checks: list[Check] = []
    sigs = info.signatures
    if DEFAULT_SIGNATURE in sigs:
        checks.append(Check("serving_default present", "PASS", f"signatures: {', '.join(sigs)}"))
    else:
        checks.append(
            Check(
                "serving_default present",
                "WARN",
                f"no '{DEFAULT_SIGNATURE}' signature (signatures: {', '.join(sigs) or 'none'})",
                "cloud targets call serving_default; export with signatures={'serving_default': fn}",
            )
        )
    unnamed, generated = [], []
    for sig in sigs.values():
        for kind, specs in (("input", sig.inputs), ("output", sig.outputs)):
            for key in specs:
                where = f"{sig.name}.{kind}s"
                if not key.strip():
                    unnamed.append(f"{where}[{key!r}]")
                elif _GENERATED_NAME.match(key):
                    generated.append(f"{where}.{key}")
    if unnamed:
        checks.append(
            Check(
                "inputs and outputs named",
                "FAIL",
                f"unnamed tensors: {', '.join(unnamed)}",
                "give every signature input and output a name",
            )
        )
    elif generated:
        checks.append(
            Check(
                "inputs and outputs named",
                "WARN",
                f"generated names that clients cannot guess: {', '.join(generated)}",
                "export with export_savedmodel, which uses the model's layer names",
            )
        )
    else:
        checks.append(
            Check("inputs and outputs named", "PASS", "every input and output has a name")
        )
    bad = [
        f"{sig.name}.{kind}.{spec.key} ({spec.dtype})"
        for sig in sigs.values()
        for kind, specs in (("inputs", sig.inputs), ("outputs", sig.outputs))
        for spec in specs.values()
        if not spec.json_representable
    ]
    if bad:
        checks.append(
            Check(
                "dtypes representable in JSON",
                "FAIL",
                f"these cannot travel as JSON: {', '.join(bad)}",
                "cast them to numbers, booleans or strings inside the signature function",
            )
        )
    else:
        checks.append(Check("dtypes representable in JSON", "PASS", "every dtype maps to JSON"))
    return checks


def _runtime_checks(info: ModelInfo, instances: Any, signature_name: str) -> list[Check]:
    from tfdeploy.predict import _tf, wire
    from tfdeploy.predict.runtime import LoadedModel

    checks = [_variables_check(info, _tf.tensorflow())]
    if checks[0].status == "FAIL":
        return checks
    try:
        model = LoadedModel(info.path, info=info)
    except TfdeployError as exc:
        checks.append(Check("model loads", "FAIL", exc.message, exc.hint))
        return checks
    checks.append(Check("model loads", "PASS", "TensorFlow loaded the model and its signatures"))
    if instances is None:
        return checks
    try:
        body = wire.as_request(instances, signature_name)
        answer = model.predict(body)
    except TfdeployError as exc:
        checks.append(Check("smoke prediction", "FAIL", exc.message, exc.hint))
        return checks
    values: Any = answer.get("predictions", answer.get("outputs"))
    if not wire.all_finite(values):
        checks.append(
            Check(
                "smoke prediction",
                "FAIL",
                "the prediction has NaN or infinite values",
                "check the example instances and the model's numerics",
            )
        )
    else:
        n = len(values) if "predictions" in answer else 1
        checks.append(Check("smoke prediction", "PASS", f"{n} prediction(s), all finite"))
    if not model.tf_serving_runs:
        checks.append(
            Check(
                "TF Serving runs the graph",
                "FAIL",
                "the serving graph reads variables its checkpoint does not restore (Could not "
                "find variable), so TF Serving cannot run it; tfdeploy predicted it through "
                "TensorFlow's object loader (tf.saved_model.save of a Keras 3 model does this)",
                "export it again with export_savedmodel (tfdeploy export) or Keras's "
                "model.export(), whose graph TF Serving runs",
            )
        )
    model.close()
    return checks


def _variables_check(info: ModelInfo, tf: Any) -> Check:
    prefix = os.path.join(info.path, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        if any(f.startswith("variables/variables.data") for f in info.files):
            return Check(
                "variables readable",
                "FAIL",
                "variables/variables.index is missing",
                "copy the whole SavedModel directory, or export it again",
            )
        return Check("variables readable", "PASS", "the model has no variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
        for name in names:
            reader.get_tensor(name)
    except Exception as exc:  # TensorFlow raises several unrelated types here
        text = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
        return Check(
            "variables readable",
            "FAIL",
            f"cannot read the variables: {text}",
            "copy the whole SavedModel directory (variables/ included), or export it again",
        )
    return Check("variables readable", "PASS", f"{len(names)} checkpoint entries read")
