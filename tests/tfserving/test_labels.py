"""Version labels in a model config file, reloaded through ModelService, against `tfdeploy serve`."""

from __future__ import annotations

from typing import Any

from tfdeploy.model.bundle import Bundle


def test_canary_beside_stable_then_rollback_to_the_stable_label(
    fleet: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle, digits_instances: list[Any]
) -> None:
    stable = fleet.target("labelled")
    canary = fleet.target("labelled", label="canary")
    stable.deploy(digits_bundle)
    result = canary.deploy(digits_bundle_changed)
    assert result.changed and result.status.version == "2"
    versions = {v.version: v for v in canary.status().versions}
    assert versions["1"].labels == ("stable",) and versions["2"].labels == ("canary",)
    assert versions["1"].state == versions["2"].state == "serving"
    # Each label answers, and stable still serves the first digest.
    assert stable.status().digest == digits_bundle.manifest.digest
    assert len(canary.predict({"instances": digits_instances})["predictions"]) == 5
    text = fleet.config_file.read_text()
    assert "specific" in text and 'key: "canary"' in text
    # Roll the canary back onto whatever stable serves.
    back = canary.rollback(to="stable")
    assert back.version == "1" and back.digest == digits_bundle.manifest.digest
    assert {v.version for v in back.versions if v.labels} == {"1"}


def test_rollback_to_an_unknown_label_is_a_clear_error(fleet: Any, digits_bundle: Bundle) -> None:
    import pytest

    from tfdeploy.errors import TargetError

    target = fleet.target("labelled2")
    target.deploy(digits_bundle)
    with pytest.raises(TargetError, match="no version or label 'blue'"):
        target.rollback(to="blue")
    with pytest.raises(TargetError, match="version 1 is the only version"):
        target.rollback()


def test_undeploy_removes_the_model_from_the_config_file_the_server_and_the_base_path(
    fleet: Any, digits_bundle: Bundle
) -> None:
    target = fleet.target("leaving")
    target.deploy(digits_bundle)
    assert target.status().state == "serving"
    status = target.undeploy()
    assert status.state == "absent" and status.versions == ()
    assert "leaving" not in fleet.config_file.read_text()
    assert not (fleet.base_path / "leaving").exists()
    assert "seed" in fleet.config_file.read_text()  # other models stay
