"""verify compares answers output by output, whichever format a target answers in."""

from __future__ import annotations

from tfdeploy.deployment.verification import compare


def test_an_r_format_answer_compares_with_tf_servings_for_one_output() -> None:
    local = {"predictions": [[0.25, 0.75], [1.0, 0.0]]}
    r_route = {"predictions": [{"prediction": [0.25, 0.75]}, {"prediction": [1.0, 0.0]}]}
    (only,) = compare(local, r_route, 1e-6)
    assert only.ok and only.max_abs_diff == 0.0
    (off,) = compare(
        local, {"predictions": [{"prediction": [0.5, 0.5]}, {"prediction": [1, 0]}]}, 1e-6
    )
    assert not off.ok and off.max_abs_diff == 0.25


def test_several_outputs_and_bytes_outputs_keep_their_columns() -> None:
    several = {"predictions": [{"a": 1.0, "b": 2.0}]}
    assert {c.output for c in compare(several, several, 0.0)} == {"a", "b"}
    blobs = {"predictions": [{"b64": "AQ=="}]}
    assert [c.ok for c in compare(blobs, blobs, 0.0)] == [True]
