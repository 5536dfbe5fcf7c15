"""validate: each check's PASS/WARN/FAIL with a reason and a fix."""

from __future__ import annotations

import shutil
from pathlib import Path

from tfdeploy import validate
from tfdeploy.predict import _tf
from tfdeploy.predict.validate import ValidationReport


def statuses(report: ValidationReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_good_model_passes_every_check_including_a_smoke_prediction(
    digits_savedmodel: Path, digits_instances: list
) -> None:
    report = validate(digits_savedmodel, instances=digits_instances)
    assert report.ok
    assert set(statuses(report).values()) == {"PASS"}
    assert list(statuses(report)) == [
        "saved_model.pb present",
        "saved_model.pb parses",
        "serve tag present",
        "serving_default present",
        "inputs and outputs named",
        "dtypes representable in JSON",
        "variables readable",
        "model loads",
        "smoke prediction",
    ]


def test_missing_directory_fails_with_a_fix(tmp_path: Path) -> None:
    report = validate(tmp_path / "nope")
    assert not report.ok
    (check,) = report.checks
    assert check.status == "FAIL" and check.fix


def test_corrupt_pb_fails(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xfe garbage")
    report = validate(tmp_path)
    assert statuses(report)["saved_model.pb parses"] == "FAIL"


def test_missing_variables_fail(digits_savedmodel: Path, tmp_path: Path) -> None:
    broken = tmp_path / "m"
    shutil.copytree(digits_savedmodel, broken)
    (broken / "variables" / "variables.index").unlink()
    report = validate(broken)
    assert statuses(report)["variables readable"] == "FAIL"
    assert not report.ok


def test_non_finite_smoke_prediction_fails(tmp_path: Path) -> None:
    tf = _tf.tensorflow()

    class Log(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: object) -> dict[str, object]:
            return {"log_x": tf.math.log(x)}

    module = Log()
    tf.saved_model.save(module, str(tmp_path / "log"), signatures={"serving_default": module.serve})
    assert validate(tmp_path / "log", instances=[1.0, 2.0]).ok
    report = validate(tmp_path / "log", instances=[1.0, 0.0])
    smoke = next(c for c in report.checks if c.name == "smoke prediction")
    assert smoke.status == "FAIL" and "NaN or infinite" in smoke.reason


def test_smoke_prediction_with_wrong_instances_fails_with_the_contract_error(
    digits_savedmodel: Path,
) -> None:
    report = validate(digits_savedmodel, instances=[[1, 2, 3]])
    smoke = next(c for c in report.checks if c.name == "smoke prediction")
    assert smoke.status == "FAIL" and "'image'" in smoke.reason


def test_keras_own_export_warns_about_generated_names_and_missing_default(tmp_path: Path) -> None:
    tf, keras = _tf.tensorflow(), _tf.keras()
    model = keras.Sequential([keras.Input(shape=(2,), name="x"), keras.layers.Dense(1)])
    model.export(str(tmp_path / "keras_export"), verbose=False)
    report = validate(tmp_path / "keras_export")
    assert statuses(report)["inputs and outputs named"] == "WARN"
    assert report.ok  # warnings do not fail

    class NoDefault(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x: object) -> dict[str, object]:
            return {"y": x * 2}

    module = NoDefault()
    tf.saved_model.save(module, str(tmp_path / "nodefault"), signatures={"double": module.double})
    assert statuses(validate(tmp_path / "nodefault"))["serving_default present"] == "WARN"


def test_non_json_dtypes_fail(tmp_path: Path) -> None:
    tf = _tf.tensorflow()

    class Complex(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: object) -> dict[str, object]:
            return {"z": tf.complex(x, x)}

    module = Complex()
    tf.saved_model.save(
        module, str(tmp_path / "complex"), signatures={"serving_default": module.serve}
    )
    report = validate(tmp_path / "complex")
    assert statuses(report)["dtypes representable in JSON"] == "FAIL"
    assert "DT_COMPLEX64" in next(c.reason for c in report.checks if c.status == "FAIL")


def test_no_serve_tag_fails(tmp_path: Path) -> None:
    tf = _tf.tensorflow()
    module = tf.Module()
    module.v = tf.Variable(1.0)
    # A MetaGraph tagged only 'train' (the TF1 way) cannot be served.
    with tf.Graph().as_default():
        v = tf.compat.v1.Variable(1.0, name="v")
        builder = tf.compat.v1.saved_model.Builder(str(tmp_path / "train_only"))
        with tf.compat.v1.Session() as sess:
            sess.run(v.initializer)
            builder.add_meta_graph_and_variables(sess, ["train"])
        builder.save()
    report = validate(tmp_path / "train_only")
    assert statuses(report)["serve tag present"] == "FAIL"
