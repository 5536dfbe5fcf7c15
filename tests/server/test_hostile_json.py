"""Hostile JSON: any nesting depth and any lone surrogate is a 400 with a message, on every
route that parses JSON, in the Python API and in `tfdeploy predict --input`; never a 500."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.server.conftest import http

from tfdeploy.cli import main
from tfdeploy.errors import InvalidInputError
from tfdeploy.predict import tfexample, wire
from tfdeploy.predict.runtime import LoadedModel
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    digits_savedmodel: Path,
    strings_savedmodel: Path,
    examples_savedmodel: Path,
) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("hostile")
    for name, src in (
        ("digits", digits_savedmodel),
        ("strings", strings_savedmodel),
        ("examples", examples_savedmodel),
    ):
        shutil.copytree(src, root / name / "1")
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f"  config {{ name: '{n}' base_path: '{n}' }}\n"
            for n in ("digits", "strings", "examples")
        )
        + "}\n"
    )
    handle = serve_savedmodel(model_config_file=config, port=0, background=True, quiet=True)
    assert handle is not None
    yield handle
    handle.stop()


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEPTHS = [101, 487, 700, 1020, 1030, 5000]


def routes(server: ServerHandle) -> dict[str, str]:
    return {
        "r": server.url + "/serving_default/predict",
        "tfs": server.url + "/v1/models/digits:predict",
        "strings": server.url + "/v1/models/strings:predict",
        "classify": server.url + "/v1/models/examples:classify",
        "regress": server.url + "/v1/models/examples:regress",
    }


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_nesting_depth_is_a_400_on_every_route(server: ServerHandle, depth: int) -> None:
    bodies = {
        "r": f'{{"instances": [{nested(depth)}]}}',
        "tfs": f'{{"inputs": {{"image": {nested(depth)}}}}}',
        "strings": f'{{"instances": {nested(depth, chr(34) + "x" + chr(34))}}}',
        "classify": f'{{"examples": [{{"x": {nested(depth)}}}]}}',
        "regress": f'{{"examples": [{{"x": 1.0}}], "context": {deep_object(depth)}}}',
    }
    for route, url in routes(server).items():
        status, body = http("POST", url, raw=bodies[route].encode())
        assert status == 400, (route, depth, body)
        assert "nested too deeply" in body["error"], (route, body)
    assert http("POST", routes(server)["r"], {"instances": [[0.0] * 64]})[0] == 200


def test_depth_of_brackets_inside_strings_does_not_count(server: ServerHandle) -> None:
    text = "[" * 500 + "{" * 500
    status, body = http("POST", routes(server)["strings"], {"instances": [text, "]]]"]})
    assert status == 200, body
    assert body["predictions"][0]["length"] == 1000


SURROGATES = ["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d", "\\ude00\\ud83d"]


@pytest.mark.parametrize("escape", SURROGATES)
def test_a_lone_surrogate_anywhere_is_a_400(server: ServerHandle, escape: str) -> None:
    s = f'"{escape}"'
    bodies = [
        ("strings", f'{{"instances": [{s}]}}'),
        ("strings", f'{{"inputs": {{"text": [{s}]}}}}'),
        ("strings", f'{{"instances": [{{"text": {s}}}]}}'),
        ("strings", f'{{"instances": [{{{s}: "x"}}]}}'),
        ("strings", f'{{"signature_name": {s}, "instances": ["x"]}}'),
        ("r", f'{{"instances": [[0.0]], {s}: 1}}'),
        ("classify", f'{{"examples": [{{"x": {s}}}]}}'),
        ("classify", f'{{"examples": [{{{s}: 1.0}}]}}'),
        ("regress", f'{{"examples": [{{"x": 1.0}}], "context": {{"c": [{s}]}}}}'),
        ("regress", f'{{"examples": [{{"x": 1.0}}], "context": {{{s}: "y"}}}}'),
    ]
    for route, raw in bodies:
        status, body = http("POST", routes(server)[route], raw=raw.encode())
        assert status == 400, (route, raw, body)
        assert "surrogate" in body["error"], (route, raw, body)
    # An encoded surrogate (CESU-8 bytes) is no UTF-8 either.
    status, body = http("POST", routes(server)["strings"], raw=b'{"instances": ["\xed\xa0\x80"]}')
    assert status == 400 and body["error"]
    # A proper pair is an emoji and fine.
    status, body = http("POST", routes(server)["strings"], raw=b'{"instances": ["\\ud83d\\ude00"]}')
    assert status == 200 and body["predictions"][0]["length"] == 4


def test_python_callers_get_the_same_errors(
    strings_savedmodel: Path, digits_model: LoadedModel
) -> None:
    model = LoadedModel(strings_savedmodel)
    for instances in (["\ud800"], [{"text": "x\udfff"}]):
        with pytest.raises(InvalidInputError, match="surrogate"):
            model.predict({"instances": instances})
    deep: Any = 1.0
    for _ in range(1500):
        deep = [deep]
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        digits_model.predict({"instances": [deep]})
    with pytest.raises(InvalidInputError, match="surrogate"):
        tfexample.examples_to_protos({"examples": [{"x": 1.0}], "context": {"\ud800": "y"}})
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        wire.loads(nested(600).encode("utf-16"))  # the standard parser's path counts too


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"instances": [' + nested(700) + "]}", "nested too deeply"),
        ("[" + nested(990) + "]", "nested too deeply"),
        ('{"instances": ["\\ud800"]}', "surrogate"),
        ('{"instances": [[1.0]]}\n{"instances": [' + nested(800) + "]}", "nested too deeply"),
    ],
)
def test_cli_predict_input_gets_one_clear_line(
    text: str,
    needle: str,
    digits_savedmodel: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.json"
    source.write_text(text)
    code, err = _run(["predict", "--model", str(digits_savedmodel), "--input", str(source)], capsys)
    assert code == 1
    assert needle in err and "internal error" not in err, err


def test_cli_predict_input_that_is_not_utf8_gets_one_clear_line(
    digits_savedmodel: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "in.json"
    source.write_bytes(b'{"instances": ["\xff\xfe"]}')
    code, err = _run(["predict", "--model", str(digits_savedmodel), "--input", str(source)], capsys)
    assert code == 1 and "UTF-8" in err and "internal error" not in err, err
    raw = io.TextIOWrapper(io.BytesIO(b'["\xc3\x28"]'), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", raw)
    code, err = _run(["predict", "--model", str(digits_savedmodel), "--input", "-"], capsys)
    assert code == 1 and "UTF-8" in err and "internal error" not in err, err


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_ordinary_json_still_parses_fast_and_exactly() -> None:
    body = {"instances": [[0.5] * 64] * 300, "signature_name": "serving_default"}
    assert wire.loads(json.dumps(body).encode()) == body
    assert wire.loads('{"a": NaN}')["a"] != wire.loads('{"a": NaN}')["a"]
