"""The Google client libraries, imported when first needed and kept off stdout.

``import google.cloud.aiplatform`` takes seconds, so registering the target imports none of
them. Each ``google.cloud.aiplatform`` module logger adds a ``StreamHandler(sys.stdout)`` at
import unless a logger above it already has a stream handler; one on stderr for warnings,
added before the first import, keeps ``--json`` output clean.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType

_quieted = False


def _quiet() -> None:
    global _quieted
    if _quieted:
        return
    logger = logging.getLogger("google.cloud.aiplatform")
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
    _quieted = True


def aiplatform() -> ModuleType:
    """``google.cloud.aiplatform``: the high-level SDK (``Endpoint.predict``)."""
    _quiet()
    return importlib.import_module("google.cloud.aiplatform")


def aiplatform_constants() -> ModuleType:
    """``google.cloud.aiplatform.constants.prediction``: the prebuilt container images."""
    _quiet()
    return importlib.import_module("google.cloud.aiplatform.constants.prediction")


def aiplatform_utils() -> ModuleType:
    """``google.cloud.aiplatform.utils``: the SDK's client wrappers."""
    _quiet()
    return importlib.import_module("google.cloud.aiplatform.utils")


def gapic() -> ModuleType:
    """``google.cloud.aiplatform_v1``: the API's own clients, which return operations at once."""
    return importlib.import_module("google.cloud.aiplatform_v1")


def storage() -> ModuleType:
    """``google.cloud.storage``."""
    return importlib.import_module("google.cloud.storage")
