"""Vertex AI's prebuilt TensorFlow serving containers, and the one that suits a model.

A model written by TensorFlow 2.N gets ``tf2-cpu.2-N`` (``tf2-gpu`` with an accelerator);
without one, the newest older image, with a warning in validation: a model using operations
added since may not load.

The list comes from the installed google-cloud-aiplatform (``TF_CONTAINER_URIS`` in
``constants/prediction.py``), so a newer SDK brings newer images. The file is read as text:
importing it would import the whole SDK, seconds that a deploy otherwise never spends.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_IMAGE = re.compile(
    r"^(?P<registry>us|europe|asia)-docker\.pkg\.dev/vertex-ai/prediction/"
    r"tf(?P<major>2?)-(?P<kind>cpu|gpu)\.(?P<version>\d+-\d+):latest$"
)
_TF_VERSION = re.compile(r"^(\d+)\.(\d+)")
_LISTED = re.compile(
    r"[\"']((?:us|europe|asia)-docker\.pkg\.dev/vertex-ai/prediction/tf[^\"']+)[\"']"
)


@dataclass(frozen=True)
class Choice:
    """The image for a model, and whether its TensorFlow version matches the model's exactly."""

    image: str
    image_version: tuple[int, int]
    model_version: tuple[int, int] | None
    exact: bool

    @property
    def label(self) -> str:
        """``2.15``: the image's TensorFlow version."""
        return f"{self.image_version[0]}.{self.image_version[1]}"


def registry(region: str) -> str:
    """The Artifact Registry host prefix (us, europe, asia) serving images to ``region``."""
    if region.startswith("europe"):
        return "europe"
    if region.startswith(("asia", "australia", "me-")):
        return "asia"
    return "us"


def tf_version(text: str) -> tuple[int, int] | None:
    """``(2, 15)`` from ``"2.15.1"``; ``None`` when unknown."""
    match = _TF_VERSION.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def image_version(image: str) -> tuple[int, int] | None:
    """The TensorFlow version of a prebuilt TensorFlow image, ``None`` for any other image."""
    match = _IMAGE.match(image)
    if match is None:
        return None
    major, minor = match.group("version").split("-")
    return int(major), int(minor)


@cache
def prebuilt(region: str, gpu: bool) -> dict[tuple[int, int], str]:
    """The prebuilt TensorFlow images the installed SDK knows for ``region``: version -> URI."""
    wanted = registry(region)
    out: dict[tuple[int, int], str] = {}
    for uri in _listed_uris():
        match = _IMAGE.match(uri)
        if match and match.group("registry") == wanted and (match.group("kind") == "gpu") == gpu:
            major, minor = match.group("version").split("-")
            out[(int(major), int(minor))] = uri
    return out


def _listed_uris() -> list[str]:
    """The TensorFlow image URIs in the SDK's constants file (importing it if it cannot be read)."""
    spec = importlib.util.find_spec("google.cloud.aiplatform")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "constants" / "prediction.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = _LISTED.findall(text)
        if found:
            return found
    from tfdeploy_cloudml.sdk import aiplatform_constants

    return list(aiplatform_constants().TF_CONTAINER_URIS)


def choose(tensorflow_version: str, region: str, *, gpu: bool = False) -> Choice:
    """The prebuilt image for a model written by ``tensorflow_version``.

    The image of that version if there is one, else the newest older one; for an unknown or
    older-than-every-image version, the newest (respectively oldest) image of the same major.
    """
    images = prebuilt(region, gpu)
    wanted = tf_version(tensorflow_version)
    if not images:
        raise LookupError("the installed google-cloud-aiplatform lists no TensorFlow images")
    if wanted in images:
        assert wanted is not None
        return Choice(images[wanted], wanted, wanted, True)
    same_major = sorted(v for v in images if wanted is None or v[0] == wanted[0]) or sorted(images)
    older = [v for v in same_major if wanted is not None and v < wanted]
    pick = older[-1] if older else (same_major[0] if wanted is not None else same_major[-1])
    return Choice(images[pick], pick, wanted, False)
