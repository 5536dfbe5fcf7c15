"""The hooks a tfdeploy plugin implements.

A plugin is a module (or any object) with functions decorated by :data:`hookimpl`, published
through an entry point in the ``tfdeploy`` group::

    # pyproject.toml
    [project.entry-points.tfdeploy]
    foo = "tfdeploy_foo"

    # tfdeploy_foo/__init__.py
    from tfdeploy.plugin import RegisterTarget, hookimpl

    @hookimpl
    def register_targets(register: RegisterTarget) -> None:
        register("foo", FooTarget, aliases=["foo-cloud"])

The built-in targets register exactly this way. A hook implementation whose name matches no
hook below is an error, so a typo cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from tfdeploy.deployment.target import Target
    from tfdeploy.predict.validate import ExtraCheck

#: The project name pluggy uses to tell tfdeploy's hooks from other projects'.
PROJECT = "tfdeploy"

hookspec = pluggy.HookspecMarker(PROJECT)

#: Marks a plugin's hook implementations: ``@hookimpl`` (from :mod:`tfdeploy.plugin`).
hookimpl = pluggy.HookimplMarker(PROJECT)


class RegisterTarget(Protocol):
    """The callback :func:`register_targets` receives."""

    def __call__(
        self, name: str, target_class: type[Target[Any]], *, aliases: Sequence[str] = ()
    ) -> None:
        """Make ``target_class`` available as plugin ``name`` (and each of ``aliases``)."""


@hookspec
def register_targets(register: RegisterTarget) -> None:
    """Register deploy targets by calling ``register(name, target_class, aliases=...)``.

    ``name`` is what a deploy.yaml ``plugin:`` key and ``--target`` accept; it must be unique
    across all installed plugins, aliases included.
    """


@hookspec
def target_checks(target: Target[Any]) -> Iterable[ExtraCheck] | None:
    """Return extra validation checks for a model about to be deployed to ``target``.

    Called for every target a deploy, plan or ``config check`` touches, whatever plugin
    provides it, so a plugin can add checks for its own targets (payload limits, supported
    TensorFlow versions) or policy checks for all targets. Return ``None`` to add nothing.
    Each check receives the model's :class:`~tfdeploy.model.signatures.ModelInfo` and returns
    :class:`~tfdeploy.predict.validate.Check` results; a ``FAIL`` stops the deploy.
    """
