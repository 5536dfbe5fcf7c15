"""TensorFlow 1.x SavedModels (reference variables, ParseExample signatures) and
``saved_model.pbtxt``: inspected without TensorFlow, loaded, validated and predicted with as
TF Serving loads and answers them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfdeploy import load_savedmodel, predict_savedmodel, validate
from tfdeploy.errors import InvalidModelError
from tfdeploy.model import textproto
from tfdeploy.model.savedmodel import read_model_info, resolve_model_dir
from tfdeploy.predict import tfexample
from tfdeploy.predict.runtime import LoadedModel


def test_pbtxt_reads_like_the_binary_savedmodel(
    half_plus_two_base: Path, half_plus_two_pbtxt: Path
) -> None:
    binary = read_model_info(half_plus_two_base)
    text = read_model_info(half_plus_two_pbtxt)
    assert (half_plus_two_pbtxt / "saved_model.pbtxt").is_file()
    assert not (half_plus_two_pbtxt / "saved_model.pb").exists()
    assert text.signature_defs == binary.signature_defs
    assert sorted(text.signatures) == [
        "classify_x2_to_y3",
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    ]
    x = text.signatures["serving_default"].inputs["x"]
    assert (x.dtype, x.shape, x.tensor_name) == ("DT_FLOAT", (None, 1), "x:0")
    assert text.signatures["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    assert text.tensorflow_version == binary.tensorflow_version != ""
    assert resolve_model_dir(half_plus_two_pbtxt / "saved_model.pbtxt") == half_plus_two_pbtxt


def test_inspect_reads_a_pbtxt_without_tensorflow(half_plus_two_pbtxt: Path) -> None:
    code = (
        "import json, sys\nfrom tfdeploy.cli import main\n"
        f"try:\n    main(['inspect', {str(half_plus_two_pbtxt)!r}, '--json'])\n"
        "except SystemExit:\n    pass\n"
        "print('TF=' + str(any(m.startswith('tensorflow') for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.rstrip().endswith("TF=False")
    info = json.loads(out[: out.rindex("TF=")])
    assert info["signatures"]["serving_default"]["inputs"][0]["shape"] == [-1, 1]


def test_tf1_models_answer_tf_servings_own_examples(
    half_plus_two_model: LoadedModel, half_plus_two_pbtxt: Path
) -> None:
    text_model = load_savedmodel(half_plus_two_pbtxt)
    try:
        for model in (half_plus_two_model, text_model):
            # x is declared [-1, 1]; TF Serving feeds [3] and the graph takes it.
            assert model.predict({"instances": [1.0, 2.0, 5.0]}) == {"predictions": [2.5, 3.0, 4.5]}
            assert model.predict({"instances": [[1.0, 2.0], [3.0, 4.0]]}) == {
                "predictions": [[2.5, 3.0], [3.5, 4.0]]
            }
            assert model.predict({"inputs": [3.0, 4.0]}) == {"outputs": [3.5, 4.0]}
            protos = np.array(tfexample.examples_to_protos({"examples": [{"x": 80.0}]}), object)
            assert model.run("regress_x_to_y", {"inputs": protos})["outputs"].tolist() == [[42.0]]
            assert model.run("regress_x_to_y2", {"inputs": protos})["outputs"].tolist() == [[43.0]]
            scores = model.run("classify_x_to_y", {"inputs": protos})["scores"]
            assert scores.tolist() == [[42.0]]
    finally:
        text_model.close()


def test_scalar_parse_example_signatures_take_a_batch_of_examples(
    scalar_examples_savedmodel: Path,
) -> None:
    model = load_savedmodel(scalar_examples_savedmodel)
    try:
        info = model.signatures["serving_default"].inputs["inputs"]
        assert info.shape == ()  # declared a scalar ...
        body = {"examples": [{"x": 2.5}, {"x": 5.0}, {"x": 10.0}]}
        protos = np.array(tfexample.examples_to_protos(body), dtype=object)  # ... fed three
        outputs = model.run("serving_default", {"inputs": protos})
        results = tfexample.classifications(outputs, 3)
        assert results == [
            [("low", 0.75), ("high", 0.25)],
            [("low", 0.5), ("high", 0.5)],
            [("low", 0.0), ("high", 1.0)],
        ]
        regressed = model.run("regress", {"inputs": protos})
        assert tfexample.regressions(regressed, 3) == [5.0, 10.0, 20.0]
    finally:
        model.close()


def test_validate_and_predict_from_the_cli_on_a_pbtxt_model(
    half_plus_two_pbtxt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tfdeploy.cli import main

    report = validate(half_plus_two_pbtxt, instances=[[1.0], [2.0]])
    assert report.ok, report.to_dict()
    assert [c.status for c in report.checks if c.name == "smoke prediction"] == ["PASS"]
    assert "saved_model.pbtxt" in report.checks[0].reason
    (tmp_path / "instances.json").write_text(json.dumps([1.0, 2.0, 5.0]))
    for args in (["--json"], []):
        main(
            [
                "predict",
                "--model",
                str(half_plus_two_pbtxt),
                "--input",
                str(tmp_path / "instances.json"),
                *args,
            ]
        )
        out = capsys.readouterr().out
        if args:
            assert json.loads(out) == {"predictions": [2.5, 3.0, 4.5]}
        else:
            assert out.startswith("Prediction 1:\n  y: 2.5\n")


def test_predict_savedmodel_with_a_base_path_of_tf1_versions(half_plus_two_base: Path) -> None:
    predictions = predict_savedmodel([[1.0], [3.0]], str(half_plus_two_base))
    assert predictions.rows == [[2.5], [3.5]] and predictions.output_names == ["y"]


def test_a_model_tf_serving_cannot_run_fails_validation_with_the_fix(tmp_path: Path) -> None:
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    keras = _tf.keras()
    # tf.saved_model.save of a module holding a Keras 3 model: its serving graph reads
    # variables its checkpoint does not restore, so TF Serving (and tfdeploy) cannot run it.
    inputs = keras.Input(shape=(2,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs))
    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        lambda x: {"y": model(x)}, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")]
    )
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    report = validate(tmp_path / "m", instances=[[1.0, 2.0]])
    assert not report.ok
    checks = {c.name: c for c in report.checks}
    assert checks["smoke prediction"].status == "PASS"
    runs = checks["TF Serving runs the graph"]
    assert runs.status == "FAIL" and "Could not find variable" in runs.reason
    assert "export_savedmodel" in (runs.fix or "")
    # Predicting it here still works: through TensorFlow's object loader.
    predictions = predict_savedmodel([[1.0, 2.0], [0.0, 0.0]], str(tmp_path / "m"))
    expected = model(np.array([[1.0, 2.0], [0.0, 0.0]], dtype=np.float32)).numpy()
    np.testing.assert_allclose(predictions.to_numpy(), expected, rtol=1e-6)


def test_a_keras_model_saved_with_tf_saved_model_save_predicts(tmp_path: Path) -> None:
    """The most common way to save a Keras 3 model in TensorFlow's format before
    ``model.export()``: TF Serving cannot run its graph, tfdeploy predicts it anyway."""
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    keras = _tf.keras()
    inputs = keras.Input(shape=(3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    tf.saved_model.save(model, str(tmp_path / "plain"))
    x = [[1.0, 2.0, 3.0]]
    output = predict_savedmodel(x, str(tmp_path / "plain")).to_numpy()
    np.testing.assert_allclose(output, model(np.array(x, dtype=np.float32)).numpy(), rtol=1e-6)


def test_a_savedmodel_directory_with_a_damaged_pbtxt(
    half_plus_two_pbtxt: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(half_plus_two_pbtxt, copy)
    text = (copy / "saved_model.pbtxt").read_text()
    (copy / "saved_model.pbtxt").write_text(text[: len(text) // 2])
    with pytest.raises(InvalidModelError) as err:
        read_model_info(copy)
    assert "is not a valid SavedModel" in err.value.message


# --- the text format ------------------------------------------------------------------------


def test_text_format_values_lists_escapes_and_comments() -> None:
    msg = textproto.parse(
        """
        # a comment
        name: "a\\"b\\n\\101\\x42" 'c' "d"   # adjacent strings join
        size: -1
        flag: true
        dims: [1, 2, 3]
        inner { key: "k" value < v: 1.5e-3 > }
        [type.googleapis.com/some.Any] { x: 1 }
        skipped { a { b: "}" } }
        """,
        skip=frozenset({"skipped"}),
    )
    assert msg.first("name") == b'a"b\nAB' + b"cd"
    assert msg.text("size") == "-1" and msg.text("flag") == "true"
    assert msg.get("dims") == ["1", "2", "3"]
    (inner,) = msg.messages("inner")
    assert inner.text("key") == "k"
    assert inner.messages("value")[0].text("v") == "1.5e-3"
    assert "[type.googleapis.com/some.Any]" in msg
    assert msg.messages("skipped") == [textproto.Message()]


@pytest.mark.parametrize(
    "text", ['name: "unterminated', "inner { a: 1", "a: 1 }", "a b", 'a: "\\q"', "a: 1 %"]
)
def test_text_format_errors(text: str) -> None:
    with pytest.raises(InvalidModelError):
        textproto.parse(text)


def test_the_dtype_table_names_tf1_reference_dtypes() -> None:
    from tfdeploy.model.signatures import DTYPE_NAMES, DTYPE_NUMBERS

    assert DTYPE_NAMES[101] == "DT_FLOAT_REF" and DTYPE_NUMBERS["DT_STRING_REF"] == 107
