"""The ``requirements.txt`` of an app bundle: the same tfdeploy and TensorFlow as the publisher's.

A ``pip freeze`` would not do: a tfdeploy installed from a checkout or a local wheel freezes to
``tfdeploy-kit @ file:///...``, a path Connect cannot reach, and everything else this machine
holds (test tools, notebooks) would be installed too. The bundle pins what the app needs:

- ``tfdeploy-kit[serve]==<the version installed here>``, whatever it was installed from (a
  checkout's version must then be on the package index Connect installs from;
  :func:`local_source` tells when it may not be);
- ``tensorflow==<the version installed here>``, or, on a machine without TensorFlow, the
  version that wrote the SavedModel.

Nothing else: the ``serve`` extra brings the server's other packages within tfdeploy's own
ranges. The text depends on those two versions only, so bundles stay byte-identical.
"""

from __future__ import annotations

import json
import re
from importlib import metadata

DISTRIBUTION = "tfdeploy-kit"
_RELEASE = re.compile(r"\d+(\.\d+){1,2}")


def installed_version(distribution: str) -> str | None:
    """The version of ``distribution`` installed in this environment, if any."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def pinned_requirements(model_tensorflow_version: str) -> str:
    """The requirements file's text; ``model_tensorflow_version`` is the SavedModel's writer."""
    tfdeploy = installed_version(DISTRIBUTION)
    if tfdeploy is None:  # pragma: no cover - the plugin depends on tfdeploy-kit
        raise RuntimeError(f"{DISTRIBUTION} is not installed")
    tensorflow = installed_version("tensorflow")
    if tensorflow is None and _RELEASE.fullmatch(model_tensorflow_version):
        tensorflow = model_tensorflow_version
    lines = [
        "# Written by tfdeploy-kit-connect: the tfdeploy and TensorFlow that published this app.",
        f"{DISTRIBUTION}[serve]=={tfdeploy}",
    ]
    if tensorflow:
        lines.append(f"tensorflow=={tensorflow}")
    return "\n".join(lines) + "\n"


def local_source() -> str | None:
    """Where tfdeploy-kit was installed from, when that is a local checkout or file.

    Connect installs ``tfdeploy-kit[serve]==<version>`` from its package index; a version
    built from a checkout may not be there.
    """
    try:
        raw = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:  # pragma: no cover - the plugin depends on it
        return None
    if not raw:
        return None
    try:
        url = json.loads(raw).get("url", "")
    except ValueError:
        return None
    return str(url) if str(url).startswith("file:") else None
