"""Writing SavedModels: :func:`export_savedmodel`, the R package's verb.

The SavedModel is written into a hidden staging directory beside its destination and renamed
into place, so a half-written model is never visible under the destination's name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tfdeploy.errors import InvalidModelError, TfdeployError
from tfdeploy.model import workdir
from tfdeploy.model.savedmodel import version_dirs
from tfdeploy.model.signatures import DEFAULT_SIGNATURE
from tfdeploy.predict import _tf


def export_savedmodel(
    model: Any,
    export_dir: str | os.PathLike[str],
    *,
    versioned: bool = False,
    overwrite: bool = True,
    signatures: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``model`` as a SavedModel and return the directory written.

    ``model`` is a Keras 3 model (functional or sequential) or a ``tf.Module`` with
    ``tf.function`` signatures. For Keras models the ``serving_default`` signature's input and
    output keys are the model's input and output layer names; the model is written through
    Keras's ``ExportArchive``, whose graph TF Serving can run (``tf.saved_model.save`` of a
    module holding a Keras 3 model writes a graph that reads variables its checkpoint does not
    restore). For a ``tf.Module``, ``signatures`` maps signature names to ``tf.function``s;
    without it, a module attribute named ``serving_default``, or its only ``tf.function`` with
    an input signature, is used.

    With ``versioned=True`` the model goes into the next integer subdirectory of
    ``export_dir`` (``1`` for an empty one), the layout TF Serving reads. With
    ``overwrite=False`` an existing non-empty destination is an error.
    """
    _tf.tensorflow()
    base = Path(export_dir).expanduser()
    if versioned:
        existing = version_dirs(base)
        target = base / str(max(existing, default=0) + 1)
    else:
        target = base
    if target.exists() and not overwrite and (target.is_file() or any(target.iterdir())):
        raise TfdeployError(
            f"{target} already exists",
            hint="pass overwrite=True (or --overwrite) to replace it, or choose another path",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    write = _writer(model, signatures)
    workdir.sweep_aside(target)  # what an interrupted export left
    staging = Path(tempfile.mkdtemp(prefix=workdir.aside_prefix(target), dir=target.parent))
    try:
        write(staging / "model")
        _publish(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _publish(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing whatever was there without a partial state."""
    if not target.exists():
        os.replace(source, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(old, target)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _writer(model: Any, signatures: Mapping[str, Any] | None) -> Callable[[Path], None]:
    """What writes ``model`` as a SavedModel into a directory."""
    tf = _tf.tensorflow()
    keras = _tf.keras()
    if isinstance(model, keras.Model):
        return _keras_writer(model, signatures)
    if isinstance(model, tf.Module):
        sigs = _module_signatures(model, signatures)
        return lambda path: tf.saved_model.save(model, str(path), signatures=sigs)
    raise TfdeployError(
        f"export_savedmodel cannot export {_a(type(model).__name__)}: it takes a Keras 3 model "
        "(keras.Model, functional or sequential) or a tf.Module with tf.function signatures",
        hint="pass the Keras model itself, or wrap the computation in a tf.Module whose "
        "tf.function has an input_signature",
    )


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "an object", "a list"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _module_signatures(module: Any, signatures: Mapping[str, Any] | None) -> dict[str, Any]:
    if signatures:
        return dict(signatures)
    tf = _tf.tensorflow()
    functions = {
        name: fn
        for name in dir(module)
        if not name.startswith("_")
        and isinstance(fn := getattr(module, name, None), tf.types.experimental.PolymorphicFunction)
        and fn.input_signature is not None
    }
    if DEFAULT_SIGNATURE in functions:
        return {DEFAULT_SIGNATURE: functions[DEFAULT_SIGNATURE]}
    if len(functions) == 1:
        return {DEFAULT_SIGNATURE: next(iter(functions.values()))}
    raise InvalidModelError(
        "cannot tell which tf.function is the serving signature"
        + (f" (found {', '.join(sorted(functions))})" if functions else " (found none)"),
        hint="pass signatures={'serving_default': module.fn}, with fn a tf.function "
        "that has an input_signature",
    )


def _layer_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    return str(history[0].name) if history else str(tensor.name)


def _keras_writer(model: Any, signatures: Mapping[str, Any] | None) -> Callable[[Path], None]:
    tf = _tf.tensorflow()
    keras = _tf.keras()
    try:
        model_inputs = list(model.inputs)
        model_outputs = list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise InvalidModelError(
            f"the Keras model {model.name!r} has no defined inputs yet",
            hint="start it with keras.Input(shape=..., name=...) or call it on data once",
        ) from exc
    input_names = [_layer_name(t) for t in model_inputs]
    output_names = [_layer_name(t) for t in model_outputs]
    for kind, names in (("input", input_names), ("output", output_names)):
        if len(set(names)) != len(names):
            raise InvalidModelError(
                f"the model's {kind} layer names are not unique: {names}",
                hint=f"give each {kind} layer its own name=...",
            )
    specs = {
        name: tf.TensorSpec(t.shape, t.dtype, name=name)
        for name, t in zip(input_names, model_inputs, strict=True)
    }
    inputs_struct = getattr(model, "_inputs_struct", None)

    def call(inputs: dict[str, Any]) -> dict[str, Any]:
        flat = [inputs[name] for name in input_names]
        if len(flat) == 1:
            args: Any = flat[0]
        elif inputs_struct is not None:
            args = keras.tree.pack_sequence_as(inputs_struct, flat)
        else:
            args = flat
        outputs = keras.tree.flatten(model(args, training=False))
        return dict(zip(output_names, outputs, strict=True))

    extra = dict(signatures or {})
    archive = keras.export.ExportArchive()
    archive.track(model)
    if DEFAULT_SIGNATURE not in extra:
        archive.add_endpoint(DEFAULT_SIGNATURE, call, input_signature=[specs])
    for name, fn in extra.items():
        archive.add_endpoint(name, fn)

    def write(path: Path) -> None:
        archive.write_out(str(path), verbose=False)

    return write
