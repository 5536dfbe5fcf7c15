"""How tfdeploy names and labels what it creates in Vertex AI.

Label keys and values hold at most 63 lowercase letters, digits, ``_`` and ``-`` (keys start
with a letter), and a resource has at most 64 labels. A sha256 digest (64 hex characters) does
not fit in one value, so it travels in two: ``tfdeploy-digest-1`` (hex 0-31) and
``tfdeploy-digest-2`` (hex 32-63). ``tfdeploy-model`` holds the model's name made
label-safe. The Vertex AI model of a tfdeploy model has a fixed id (:func:`model_id`), so a
model upload whose answer was lost cannot create a second model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

MODEL = "tfdeploy-model"
DIGEST_1 = "tfdeploy-digest-1"
DIGEST_2 = "tfdeploy-digest-2"
#: Keys tfdeploy sets itself; a user's labels may not use the prefix.
RESERVED_PREFIX = "tfdeploy-"
#: Vertex AI allows 64 labels; tfdeploy keeps a few for itself.
MAX_USER_LABELS = 60

_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_UNSAFE = re.compile(r"[^a-z0-9_-]")
_HEX = re.compile(r"^[0-9a-f]{32}$")


def problem(key: str, value: str) -> str | None:
    """What is wrong with a user's label, or ``None``."""
    if not _KEY.match(key):
        return "keys are 1-63 lowercase letters, digits, _ or -, starting with a letter"
    if key.startswith(RESERVED_PREFIX):
        return f"keys starting with {RESERVED_PREFIX!r} are tfdeploy's own"
    if not isinstance(value, str) or not _VALUE.match(value):
        return "values are at most 63 lowercase letters, digits, _ or -"
    return None


def slug(name: str, limit: int = 63) -> str:
    """``name`` made label-safe: lowercase, other characters as ``-``, at most ``limit`` long.

    A name that changes on the way (capitals, dots) or is too long gets 8 hex characters of
    its sha256 appended, so two tfdeploy model names never share a slug.
    """
    safe = _UNSAFE.sub("-", name.lower())
    if safe == name and len(safe) <= limit:
        return safe
    tail = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{safe[: limit - 9]}-{tail}"


def model_id(name: str) -> str:
    """The id of the Vertex AI model that holds every version of tfdeploy model ``name``."""
    return f"tfdeploy-{slug(name, 63 - len('tfdeploy-'))}"


def for_version(name: str, digest: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The labels of a model version: the user's, the model's name and the bundle digest."""
    hex_digest = digest.removeprefix("sha256:")
    return {
        **extra,
        MODEL: slug(name),
        DIGEST_1: hex_digest[:32],
        DIGEST_2: hex_digest[32:64],
    }


def digest_of(labels: Mapping[str, str]) -> str | None:
    """The bundle digest a model version's labels carry, or ``None``."""
    first, second = labels.get(DIGEST_1, ""), labels.get(DIGEST_2, "")
    if _HEX.match(first) and _HEX.match(second):
        return f"sha256:{first}{second}"
    return None
