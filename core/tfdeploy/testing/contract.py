"""The contract tests every deploy target passes, for plugin authors to run on their own.

Subclass :class:`TargetContract` in a test module and provide the ``make_target`` fixture,
a factory that returns a fresh target for a model name (each test uses its own name, so a
factory may share one server or bucket between tests)::

    import pytest
    from tfdeploy.testing.contract import TargetContract

    class TestFooTarget(TargetContract):
        @pytest.fixture
        def make_target(self, tmp_path):
            def make(model_name, progress=None):
                config = FooTarget.Config(path=str(tmp_path))
                return FooTarget(config, name="foo", model_name=model_name, progress=progress)
            return make

The tests use the session fixtures of :mod:`tfdeploy.testing` (the digits model, two bundles
of it with different digests, and example instances).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pydantic
import pytest

from tfdeploy.plugin import (
    Bundle,
    DeployResult,
    Progress,
    Status,
    Target,
    TfdeployError,
    UnsupportedError,
)

#: ``make_target(model_name, progress=None) -> Target``
TargetFactory = Callable[..., Target[Any]]

_names = itertools.count(1)


class _Interrupt(Progress):
    """Raises KeyboardInterrupt the first time a long step reports progress."""

    def __init__(self) -> None:
        self.fired = False

    def advance(self, done: int, total: int) -> None:
        self.fired = True
        raise KeyboardInterrupt


class TargetContract:
    """The rules of :class:`tfdeploy.deployment.target.Target`, as tests. See the module docstring."""

    #: Largest absolute difference accepted between the target's answers and the local model's.
    tolerance = 1e-4

    @pytest.fixture
    def make_target(self) -> TargetFactory:
        """Override: return ``make(model_name, progress=None) -> Target``."""
        raise NotImplementedError("define a make_target fixture in your TargetContract subclass")

    @pytest.fixture
    def model_name(self) -> str:
        """A model name no other test of this run uses."""
        return f"contract{next(_names)}"

    def deployed(self, target: Target[Any], bundle: Bundle) -> DeployResult:
        """Deploy ``bundle``; override to do more (start a server) the first time."""
        return target.deploy(bundle)

    def test_unknown_config_key_is_refused(
        self, make_target: TargetFactory, model_name: str
    ) -> None:
        """The config model refuses keys it does not know (``extra="forbid"``)."""
        target = make_target(model_name)
        settings = {**target.config.model_dump(), "no_such_setting": 1}
        with pytest.raises(pydantic.ValidationError, match="no_such_setting"):
            type(target.config).model_validate(settings)

    def test_status_before_any_deploy_is_absent(
        self, make_target: TargetFactory, model_name: str
    ) -> None:
        """Before any deploy, ``status()`` says ``absent`` with no version and no digest."""
        status = make_target(model_name).status()
        assert isinstance(status, Status)
        assert status.state == "absent"
        assert status.version is None and status.digest is None

    def test_deploy_serves_the_bundle_and_status_reports_it(
        self, make_target: TargetFactory, model_name: str, digits_bundle: Bundle
    ) -> None:
        """A deploy sends bytes, serves the bundle, and ``status()`` reports its digest and version."""
        target = make_target(model_name)
        result = self.deployed(target, digits_bundle)
        assert result.changed
        assert result.bytes_sent > 0
        status = target.status()
        assert status.model == model_name
        assert status.digest == digits_bundle.manifest.digest
        assert status.version is not None
        assert status.state in ("serving", "unknown")

    def test_same_digest_twice_sends_nothing_and_makes_no_version(
        self, make_target: TargetFactory, model_name: str, digits_bundle: Bundle
    ) -> None:
        """Deploying the digest that already serves sends nothing and makes no new version."""
        target = make_target(model_name)
        first = self.deployed(target, digits_bundle)
        again = target.deploy(digits_bundle)
        assert not again.changed
        assert again.bytes_sent == 0
        assert again.status.version == first.status.version
        assert len(target.status().versions) == len(first.status.versions)

    def test_plan_says_create_then_noop_then_update(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_bundle_changed: Bundle,
    ) -> None:
        """``plan`` says create before a deploy, noop for the same digest, update for another."""
        target = make_target(model_name)
        assert target.plan(digits_bundle).action == "create"
        self.deployed(target, digits_bundle)
        assert target.plan(digits_bundle).action == "noop"
        assert target.plan(digits_bundle_changed).action == "update"

    def test_a_new_digest_becomes_a_new_version(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_bundle_changed: Bundle,
    ) -> None:
        """A bundle with another digest becomes a new version, which then serves."""
        target = make_target(model_name)
        first = self.deployed(target, digits_bundle)
        second = target.deploy(digits_bundle_changed)
        assert second.changed
        assert second.status.version != first.status.version
        assert target.status().digest == digits_bundle_changed.manifest.digest

    def test_predict_answers_like_the_local_model(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_model: Any,
        digits_instances: list[Any],
    ) -> None:
        """``predict`` answers in the contract, within tolerance of the local model."""
        target = make_target(model_name)
        self.deployed(target, digits_bundle)
        body = {"instances": digits_instances}
        got = target.predict(body)
        want = digits_model.predict(body)
        assert set(got) == {"predictions"}
        assert np.asarray(got["predictions"]).shape == np.asarray(want["predictions"]).shape
        diff = np.max(np.abs(np.asarray(got["predictions"]) - np.asarray(want["predictions"])))
        assert diff <= self.tolerance

    def test_interrupted_deploy_leaves_the_previous_version_serving(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_bundle_changed: Bundle,
    ) -> None:
        """Ctrl-C during a deploy leaves the previous version serving; a re-run completes it."""
        before = self.deployed(make_target(model_name), digits_bundle).status
        interrupt = _Interrupt()
        with pytest.raises(KeyboardInterrupt):
            make_target(model_name, progress=interrupt).deploy(digits_bundle_changed)
        assert interrupt.fired, "deploy must report its long steps through progress.advance"
        after = make_target(model_name).status()
        assert (after.version, after.digest) == (before.version, before.digest)
        assert [v.version for v in after.versions] == [v.version for v in before.versions]
        rerun = make_target(model_name).deploy(digits_bundle_changed)
        assert rerun.changed
        assert make_target(model_name).status().digest == digits_bundle_changed.manifest.digest

    def test_rollback_serves_the_previous_digest_and_can_roll_forward_or_is_unsupported(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_bundle_changed: Bundle,
    ) -> None:
        """``rollback()`` serves the previous digest again and keeps the version it replaced:
        ``rollback(to=<that version>)`` serves it again. Or it raises ``UnsupportedError``."""
        target = make_target(model_name)
        self.deployed(target, digits_bundle)
        newer = target.deploy(digits_bundle_changed).status
        try:
            status = target.rollback()
        except UnsupportedError:
            return
        assert status.digest == digits_bundle.manifest.digest
        assert target.status().digest == digits_bundle.manifest.digest
        assert newer.version is not None
        forward = target.rollback(to=newer.version)
        assert forward.digest == digits_bundle_changed.manifest.digest
        assert target.status().version == newer.version

    def test_rollback_with_discard_deletes_the_version_it_replaces_or_is_unsupported(
        self,
        make_target: TargetFactory,
        model_name: str,
        digits_bundle: Bundle,
        digits_bundle_changed: Bundle,
    ) -> None:
        """``rollback(discard=True)`` serves the previous digest and deletes the version it
        replaced, so rolling forward to it fails. Or it raises ``UnsupportedError``."""
        target = make_target(model_name)
        self.deployed(target, digits_bundle)
        newer = target.deploy(digits_bundle_changed).status
        try:
            status = target.rollback(discard=True)
        except UnsupportedError:
            return
        assert status.digest == digits_bundle.manifest.digest
        assert newer.version is not None
        with pytest.raises(TfdeployError):
            target.rollback(to=newer.version)
        assert target.status().digest == digits_bundle.manifest.digest
