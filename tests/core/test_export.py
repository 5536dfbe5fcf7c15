"""export_savedmodel: Keras functional/sequential models and tf.Modules, named as promised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfdeploy import export_savedmodel, load_savedmodel, predict_savedmodel, read_model_info
from tfdeploy.errors import InvalidModelError, TfdeployError
from tfdeploy.predict import _tf


def test_keras_functional_keys_are_layer_names_and_predictions_match(
    digits_savedmodel: Path,
) -> None:
    from tfdeploy.examples.digits import load_digits, train

    sig = read_model_info(digits_savedmodel).signatures["serving_default"]
    assert list(sig.inputs) == ["image"] and list(sig.outputs) == ["prediction"]
    model = train(epochs=1)
    images, _ = load_digits()
    exported = export_savedmodel(model, digits_savedmodel.parent / "again")
    served = predict_savedmodel(images[:8], load_savedmodel(exported)).to_numpy()
    np.testing.assert_allclose(served, model.predict(images[:8], verbose=0), rtol=1e-5, atol=1e-6)


def test_keras_multi_input_output(multi_io_savedmodel: Path) -> None:
    sig = read_model_info(multi_io_savedmodel).signatures["serving_default"]
    assert list(sig.inputs) == ["a", "b"] and list(sig.outputs) == ["logits", "score"]
    preds = predict_savedmodel([{"a": [1, 2, 3], "b": [4, 5]}], multi_io_savedmodel)
    assert set(preds[0]) == {"logits", "score"} and len(preds[0]["logits"]) == 2


def test_sequential_model_uses_its_input_and_last_layer_names(tmp_path: Path) -> None:
    keras = _tf.keras()
    model = keras.Sequential(
        [keras.Input(shape=(4,), name="features"), keras.layers.Dense(2, name="logits")]
    )
    sig = read_model_info(export_savedmodel(model, tmp_path / "seq")).signatures["serving_default"]
    assert list(sig.inputs) == ["features"] and list(sig.outputs) == ["logits"]


def test_unbuilt_sequential_model_is_a_clear_error(tmp_path: Path) -> None:
    keras = _tf.keras()
    with pytest.raises(InvalidModelError) as err:
        export_savedmodel(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "seq")
    assert "keras.Input" in (err.value.hint or "")
    assert not (tmp_path / "seq").exists()


def test_tf_module_with_a_tf_function_signature(strings_savedmodel: Path) -> None:
    sig = read_model_info(strings_savedmodel).signatures["serving_default"]
    assert list(sig.inputs) == ["text"] and set(sig.outputs) == {"length", "echo_bytes"}
    preds = predict_savedmodel(["héllo", {"b64": "AAE="}], strings_savedmodel)
    assert preds[0] == {"echo_bytes": {"b64": "aMOpbGxv"}, "length": 6}
    assert preds[1]["length"] == 2


def test_tf_module_without_a_signature_is_a_clear_error(tmp_path: Path) -> None:
    tf = _tf.tensorflow()
    with pytest.raises(InvalidModelError, match="found none"):
        export_savedmodel(tf.Module(), tmp_path / "m")


def test_versioned_writes_the_next_integer_folder(tmp_path: Path) -> None:
    keras = _tf.keras()
    model = keras.Sequential([keras.Input(shape=(1,), name="x"), keras.layers.Dense(1, name="y")])
    first = export_savedmodel(model, tmp_path, versioned=True)
    second = export_savedmodel(model, tmp_path, versioned=True)
    assert (first.name, second.name) == ("1", "2")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_overwrite_false_refuses_an_existing_model(tmp_path: Path) -> None:
    keras = _tf.keras()
    model = keras.Sequential([keras.Input(shape=(1,), name="x"), keras.layers.Dense(1, name="y")])
    export_savedmodel(model, tmp_path / "m")
    with pytest.raises(TfdeployError, match="already exists"):
        export_savedmodel(model, tmp_path / "m", overwrite=False)
    export_savedmodel(model, tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "saved_model.pb").is_file()


def test_other_objects_are_refused_with_a_sentence_naming_what_it_takes(tmp_path: Path) -> None:
    thing: Any = object()
    with pytest.raises(TfdeployError) as err:
        export_savedmodel(thing, tmp_path / "m")
    # What an uncaught error prints in a traceback: the problem, what it takes, what to do.
    shown = str(err.value)
    assert shown.startswith("export_savedmodel cannot export an object: it takes a Keras 3 model")
    assert "tf.Module with tf.function signatures" in shown
    assert "pass the Keras model itself" in shown
    assert not (tmp_path / "m").exists()
