"""Shared test set-up. The digits fixtures come from tfdeploy's own pytest plugin
(``tfdeploy.testing``), the same ones plugin authors use; small extra models live here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def strings_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input ``text`` (strings); outputs ``length`` and ``echo_bytes`` (binary, so b64 in JSON)."""
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()

    class Echo(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text: Any) -> dict[str, Any]:
            return {"length": tf.strings.length(text), "echo_bytes": text}

    return export_savedmodel(Echo(), tmp_path_factory.mktemp("echo") / "savedmodel")
