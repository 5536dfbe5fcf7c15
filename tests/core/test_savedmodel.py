"""Finding and reading SavedModels without TensorFlow; the bad paths users give."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tfdeploy.errors import InvalidModelError, ModelNotFoundError
from tfdeploy.model.savedmodel import content_digest, read_model_info, resolve_model_dir


def test_info_lists_signatures_tags_version_size_and_digest(digits_savedmodel: Path) -> None:
    info = read_model_info(digits_savedmodel)
    sig = info.signatures["serving_default"]
    assert list(sig.inputs) == ["image"] and list(sig.outputs) == ["prediction"]
    assert sig.inputs["image"].dtype == "DT_FLOAT" and sig.inputs["image"].shape == (None, 64)
    assert sig.outputs["prediction"].shape == (None, 10)
    assert sig.method_name == "tensorflow/serving/predict"
    assert [m.tags for m in info.meta_graphs] == [("serve",)]
    assert info.tensorflow_version.startswith("2.")
    assert info.size_bytes > 0 and info.digest.startswith("sha256:")
    assert "__saved_model_init_op" not in info.signatures


def test_digest_depends_on_content_not_location(digits_savedmodel: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(digits_savedmodel, copy)
    assert content_digest(copy) == content_digest(digits_savedmodel)
    (copy / "assets").mkdir(exist_ok=True)
    (copy / "assets" / "vocab.txt").write_text("x")
    assert content_digest(copy) != content_digest(digits_savedmodel)


def test_resolves_the_pb_file_and_a_base_path_of_versions(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    assert resolve_model_dir(digits_savedmodel / "saved_model.pb") == digits_savedmodel
    for version in ("1", "10", "2"):
        shutil.copytree(digits_savedmodel, tmp_path / version)
    (tmp_path / "not-a-version").mkdir()
    assert resolve_model_dir(tmp_path) == tmp_path / "10"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model_dir(tmp_path / "nope")


def test_directory_without_a_savedmodel(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_dir(tmp_path)
    assert "no SavedModel" in err.value.message and "saved_model.pb" in (err.value.hint or "")


def test_other_files_are_refused_with_a_pointer(tmp_path: Path) -> None:
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"PK")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_dir(keras_file)
    assert "tfdeploy export" in (err.value.hint or "")
    graph = tmp_path / "frozen.pb"
    graph.write_bytes(b"\x00")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model_dir(graph)


@pytest.mark.parametrize(
    "content", [b"", b"\xff\xff\xff\xff", b"this is not a protobuf at all", b"\x12\x05ab"]
)
def test_corrupt_saved_model_pb(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "saved_model.pb").write_bytes(content)
    with pytest.raises(InvalidModelError) as err:
        read_model_info(tmp_path)
    assert "not a valid SavedModel" in err.value.message
    assert "export the model again" in (err.value.hint or "")
