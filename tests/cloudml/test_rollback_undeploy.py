"""Rolling back (and forward) and undeploying on the fake Vertex AI."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tfdeploy.plugin import Bundle, TargetError

from .conftest import STAGING_BUCKET, deployed, serving
from .fake_vertex import FakeVertex

_names = itertools.count(1)


@pytest.fixture
def two_versions(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> str:
    """A model name whose version 2 serves, version 1 undeployed."""
    name = f"back{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    make_cloudml(name).deploy(digits_bundle_changed)
    return name


def test_rollback_redeploys_the_previous_version_and_keeps_the_newer_to_roll_forward(
    vertex: FakeVertex,
    make_cloudml: Any,
    two_versions: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
) -> None:
    name = two_versions
    model_id = f"tfdeploy-{name}"
    status = make_cloudml(name).rollback()
    assert (status.version, status.digest) == ("1", digits_bundle.manifest.digest)
    assert serving(vertex, name) == {(model_id, "1"): 100}
    assert deployed(vertex, name) == [(model_id, "1")]
    versions = vertex.models[model_id].versions
    assert sorted(versions) == ["1", "2"]  # version 2 stays available
    assert versions["1"].aliases == ["default"]
    with pytest.raises(TargetError, match="oldest version") as raised:
        make_cloudml(name).rollback()
    assert "--to" in (raised.value.hint or "")
    # Roll forward: by version, or by deploying the newer bundle again (no upload).
    forward = make_cloudml(name).rollback(to="2")
    assert (forward.version, forward.digest) == ("2", digits_bundle_changed.manifest.digest)
    make_cloudml(name).rollback(to="1")
    again = make_cloudml(name).deploy(digits_bundle_changed)
    assert again.changed and again.bytes_sent == 0
    assert serving(vertex, name) == {(model_id, "2"): 100}
    assert sorted(vertex.models[model_id].versions) == ["1", "2"]


def test_rollback_with_discard_deletes_the_replaced_version_and_its_staged_files(
    vertex: FakeVertex,
    make_cloudml: Any,
    two_versions: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
    storage_client: Any,
) -> None:
    name = two_versions
    model_id = f"tfdeploy-{name}"
    status = make_cloudml(name).rollback(discard=True)
    assert (status.version, status.digest) == ("1", digits_bundle.manifest.digest)
    assert serving(vertex, name) == {(model_id, "1"): 100}
    assert sorted(vertex.models[model_id].versions) == ["1"]
    staged = {
        b.name.split("/")[2]
        for b in storage_client.list_blobs(STAGING_BUCKET, prefix=f"tfdeploy/{name}/")
    }
    assert staged == {digits_bundle.manifest.digest.removeprefix("sha256:")}
    with pytest.raises(TargetError, match="no version or alias '2'"):
        make_cloudml(name).rollback(to="2")


def test_rollback_of_a_canary_gives_everything_back_to_the_stable_version(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"back{next(_names)}"
    model_id = f"tfdeploy-{name}"
    make_cloudml(name).deploy(digits_bundle)
    make_cloudml(name, traffic_percent=10).deploy(digits_bundle_changed)
    assert serving(vertex, name) == {(model_id, "1"): 90, (model_id, "2"): 10}
    make_cloudml(name).rollback()
    assert serving(vertex, name) == {(model_id, "1"): 100}
    assert deployed(vertex, name) == [(model_id, "1")]


def test_rollback_to_an_unknown_version_names_the_known_ones(
    vertex: FakeVertex, make_cloudml: Any, two_versions: str
) -> None:
    with pytest.raises(TargetError, match=r"no version or alias '7' \(versions: 1, 2\)"):
        make_cloudml(two_versions).rollback(to="7")


def test_rollback_with_nothing_deployed_says_so(vertex: FakeVertex, make_cloudml: Any) -> None:
    with pytest.raises(TargetError, match="nothing to roll back"):
        make_cloudml(f"back{next(_names)}").rollback()


def test_undeploy_removes_the_deployments_and_keeps_endpoint_and_versions(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"back{next(_names)}"
    model_id = f"tfdeploy-{name}"
    make_cloudml(name).deploy(digits_bundle)
    make_cloudml(name, traffic_percent=50).deploy(digits_bundle_changed)
    assert len(deployed(vertex, name)) == 2
    status = make_cloudml(name).undeploy()
    assert status.state == "absent" and status.version is None
    assert [(v.version, v.state) for v in status.versions] == [("2", "absent"), ("1", "absent")]
    assert deployed(vertex, name) == []
    assert vertex.endpoint_named(name).traffic_split == {}
    assert sorted(vertex.models[model_id].versions) == ["1", "2"]
    assert make_cloudml(name).undeploy().state == "absent"  # twice is fine
    redeployed = make_cloudml(name).deploy(digits_bundle_changed)  # the version comes back
    assert redeployed.bytes_sent == 0
    assert serving(vertex, name) == {(model_id, "2"): 100}


def test_undeploy_with_the_flag_deletes_endpoint_model_and_staged_files(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, storage_client: Any
) -> None:
    name = f"back{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    status = make_cloudml(name, delete_on_undeploy=True).undeploy()
    assert (status.state, status.versions) == ("absent", ())
    assert [e for e in vertex.endpoints.values() if e.display_name == name] == []
    assert vertex.models_named(name) == []
    assert list(storage_client.list_blobs(STAGING_BUCKET, prefix=f"tfdeploy/{name}/")) == []
    # Everything comes back with the next deploy.
    again = make_cloudml(name).deploy(digits_bundle)
    assert again.bytes_sent == digits_bundle.manifest.size_bytes
    assert again.status.state == "serving"
