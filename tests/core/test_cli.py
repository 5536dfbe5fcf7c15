"""The tfdeploy CLI: commands, exit codes, one-line errors, and no TensorFlow where no model loads."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfdeploy.cli import main

TFDEPLOY = [sys.executable, "-m", "tfdeploy"]


def run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    stdin: str | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str, str]:
    """Run the CLI in this process (the model fixtures are already loaded) and capture it."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_process(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TFDEPLOY_DEBUG"}
    env.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    return subprocess.run(
        [*TFDEPLOY, *args], capture_output=True, text=True, env=env, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def imports_tensorflow(args: list[str]) -> bool:
    code = (
        "import sys\nfrom tfdeploy.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('TF=' + str(any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    assert "TF=" in out, out
    return "TF=True" in out


def test_help_version_and_inspect_never_import_tensorflow(digits_savedmodel: Path) -> None:
    assert not imports_tensorflow(["--help"])
    assert not imports_tensorflow(["--version"])
    assert not imports_tensorflow(["inspect", str(digits_savedmodel)])
    assert not imports_tensorflow(
        [
            "package",
            str(digits_savedmodel),
            "--name",
            "d",
            "-o",
            str(digits_savedmodel.parent / "pkg"),
        ]
    )


def test_version_and_usage_errors_exit_2() -> None:
    version = run_process(["--version"])
    assert version.returncode == 0 and "0." in version.stdout
    usage = run_process(["package", "somewhere"])  # --name missing
    assert usage.returncode == 2 and "Missing option '--name'" in usage.stderr
    unknown = run_process(["frobnicate"])
    assert unknown.returncode == 2 and "No such command" in unknown.stderr


def test_user_errors_are_one_line_without_traceback_unless_debugging(tmp_path: Path) -> None:
    result = run_process(["inspect", str(tmp_path / "missing")])
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no such file or directory")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "— give the path of a SavedModel directory" in result.stderr  # the fix, same line
    debug = run_process(["inspect", str(tmp_path / "missing")], env={"TFDEPLOY_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_inspect_text_and_json(digits_savedmodel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["inspect", str(digits_savedmodel)], capsys)
    assert code == 0
    assert "Signature serving_default (tensorflow/serving/predict)" in out
    assert "image" in out and "DT_FLOAT" in out and "[-1, 64]" in out and "sha256:" in out
    code, out, _ = run(["inspect", str(digits_savedmodel), "--json"], capsys)
    data = json.loads(out)
    assert data["signatures"]["serving_default"]["outputs"][0]["name"] == "prediction"
    assert data["tensorflow_version"] and data["digest"].startswith("sha256:")


def test_validate_exit_codes_and_json(
    digits_savedmodel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instances = tmp_path / "instances.jsonl"
    instances.write_text("\n".join(json.dumps([0.5] * 64) for _ in range(3)))
    code, out, _ = run(["validate", str(digits_savedmodel), "--instances", str(instances)], capsys)
    assert code == 0 and "PASS  smoke prediction" in out and "0 failures" in out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"junk")
    code, out, _ = run(["validate", str(tmp_path / "bad"), "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert failed[0]["name"] == "saved_model.pb parses" and failed[0]["fix"]


def test_package_writes_a_bundle(
    digits_savedmodel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        [
            "package",
            str(digits_savedmodel),
            "--name",
            "digits",
            "--version",
            "4",
            "-o",
            str(tmp_path),
            "--json",
        ],
        capsys,
    )
    data = json.loads(out)
    assert code == 0 and Path(data["path"]) == tmp_path / "digits-4.tar.gz" and data["version"] == 4


def test_predict_from_file_stdin_and_json_lines(
    digits_savedmodel: Path,
    digits_instances: list,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": digits_instances[:2]}))
    code, out, _ = run(
        ["predict", "--model", str(digits_savedmodel), "--input", str(request)], capsys
    )
    assert code == 0 and out.startswith("Prediction 1:") and "Prediction 2:" in out
    lines = "\n".join(json.dumps(i) for i in digits_instances[:3])
    code, out, _ = run(
        ["predict", "--model", str(digits_savedmodel), "--json"],
        capsys,
        stdin=lines,
        monkeypatch=monkeypatch,
    )
    assert code == 0 and len(json.loads(out)["predictions"]) == 3
    code, _, err = run(
        ["predict", "--model", str(digits_savedmodel), "--input", "-"],
        capsys,
        stdin='{"instances": [[1, 2]]}',
        monkeypatch=monkeypatch,
    )
    assert (
        code == 1
        and "input 'image' expects DT_FLOAT values of shape [64]" in err
        and "Traceback" not in err
    )


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ('{"instances": []}', "'instances' is empty"),
        ('{"instances": [{"pixels": [0]}]}', "unknown input 'pixels'"),
        ('{"instances": [["a"]]}', "DT_FLOAT numbers; got a string"),
        ("[[1, 2", "malformed JSON"),
        ("", "is empty"),
    ],
)
def test_predict_bad_input_gets_one_clear_line(
    digits_savedmodel: Path,
    stdin: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(
        ["predict", "--model", str(digits_savedmodel), "--input", "-"],
        capsys,
        stdin=stdin,
        monkeypatch=monkeypatch,
    )
    assert code == 1 and message in err and "Traceback" not in err and out == ""


def test_predict_with_a_nan_instance_answers_with_bare_tokens(
    digits_savedmodel: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(
        ["predict", "--model", str(digits_savedmodel), "--json"],
        capsys,
        stdin='{"instances": [[NaN, Infinity' + ", 0" * 62 + "]]}",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and len(json.loads(out)["predictions"][0]) == 10


def test_predict_bad_model_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "frozen.pb").write_bytes(b"\x00")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "saved_model.pb").write_bytes(b"\xff\xff")
    (tmp_path / "empty").mkdir()
    for model, message in [
        (tmp_path / "missing", "no such file or directory"),
        (tmp_path / "frozen.pb", "is a file, not a SavedModel"),
        (tmp_path / "corrupt", "not a valid SavedModel"),
        (tmp_path / "empty", "no SavedModel in"),
    ]:
        code, _, err = run(
            ["predict", "--model", str(model), "--input", "-"],
            capsys,
            stdin="[[1]]",
            monkeypatch=monkeypatch,
        )
        assert code == 1 and message in err and "Traceback" not in err


def test_export_a_keras_file(
    tmp_path: Path, digits_instances: list, capsys: pytest.CaptureFixture[str]
) -> None:
    from tfdeploy.examples.digits import build_model

    build_model().save(tmp_path / "digits.keras")
    code, out, _ = run(
        ["export", str(tmp_path / "digits.keras"), "-o", str(tmp_path / "sm"), "--versioned"],
        capsys,
    )
    assert code == 0 and "exported" in out
    code, out, _ = run(["inspect", str(tmp_path / "sm"), "--json"], capsys)
    assert json.loads(out)["path"].endswith("/sm/1")
    code, _, err = run(["export", str(tmp_path / "nope.keras"), "-o", str(tmp_path / "x")], capsys)
    assert code == 1 and "no such file" in err
    (tmp_path / "bad.keras").write_text("not a zip")
    code, _, err = run(["export", str(tmp_path / "bad.keras"), "-o", str(tmp_path / "x")], capsys)
    assert code == 1 and "Keras cannot load" in err and "Traceback" not in err


def test_view_writes_the_graph_for_tensorboard(
    digits_savedmodel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["view", str(digits_savedmodel), "--logdir", str(tmp_path / "logs"), "--no-launch"], capsys
    )
    assert code == 0 and "tensorboard --logdir" in out
    events = list((tmp_path / "logs" / "serving_default").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000


def test_view_without_tensorboard_says_how_to_install_it(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    # A sitecustomize that hides the tensorboard package from import machinery.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.util as u\n_f = u.find_spec\n"
        "u.find_spec = lambda n, *a, **k: None if n == 'tensorboard' else _f(n, *a, **k)\n"
    )
    env = {"PYTHONPATH": str(hide)}
    result = run_process(["view", str(digits_savedmodel)], env=env)
    assert result.returncode == 1
    assert (
        "TensorBoard is not installed" in result.stderr
        and "tfdeploy-kit[tensorboard]" in result.stderr
    )


def test_view_launches_tensorboard_on_the_graph(digits_savedmodel: Path, tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logdir = tmp_path / "logs"
    args = ["view", str(digits_savedmodel), "--logdir", str(logdir), "--port", str(port)]
    process = subprocess.Popen([*TFDEPLOY, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        page = b""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2) as r:
                    page = r.read()
                if b"serving_default" in page:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert b"serving_default" in page, (
            process.stdout.read() if process.poll() is not None else page
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Stopping `tfdeploy view` stops the TensorBoard it started.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=1)
        except OSError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("TensorBoard kept running after tfdeploy view stopped")
