"""The extras of tfdeploy-kit (everything else is in pyproject.toml).

Each built-in deploy target is its own distribution under ``plugins/<name>/``
(``tfdeploy-kit-<name>``), installed by the extra of the same name:
``pip install "tfdeploy-kit[tfserving]"``. Installed from a checkout
(``pip install ".[tensorflow,serve,tfserving]"``), an extra points at the plugin's folder, so
nothing has to be published first; set ``TFDEPLOY_RELEASE=1`` when building a release, so the
extras name the published distributions instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
#: The built-in deploy targets, each a distribution under plugins/.
TARGETS = ("tfserving", "cloudml", "connect")

TENSORFLOW = ["tensorflow>=2.16", "keras>=3"]
SERVE = [
    "tensorflow>=2.16",
    "uvicorn>=0.30",
    "uvloop>=0.19; sys_platform != 'win32'",
    "httptools>=0.6",
    "grpcio>=1.60",
    "tensorflow-serving-api>=2.16",
    "orjson>=3.9",
]


def target(name: str) -> str:
    """The requirement that installs target ``name``: its folder in a checkout, else its name."""
    folder = HERE / "plugins" / name
    distribution = f"tfdeploy-kit-{name}"
    if (folder / "pyproject.toml").is_file() and not os.environ.get("TFDEPLOY_RELEASE"):
        return f"{distribution} @ {folder.as_uri()}"
    return distribution


def available_targets() -> list[str]:
    """The targets [all] installs: every one that exists in this tree (or, for a release, all)."""
    if os.environ.get("TFDEPLOY_RELEASE"):
        return list(TARGETS)
    return [n for n in TARGETS if (HERE / "plugins" / n / "pyproject.toml").is_file()]


setup(
    extras_require={
        # TensorFlow is an extra so that machines which only deploy or check status need not
        # install it.
        "tensorflow": TENSORFLOW,
        # `tfdeploy serve`: the HTTP server, and TF Serving's gRPC API (whose protos need
        # TensorFlow).
        "serve": SERVE,
        "tensorboard": ["tensorboard>=2.16"],
        "examples": ["scikit-learn>=1.4"],
        **{name: [target(name)] for name in TARGETS},
        "all": sorted(
            {*TENSORFLOW, *SERVE, "tensorboard>=2.16", *(target(n) for n in available_targets())}
        ),
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "scikit-learn>=1.4",
            "schemathesis>=4",
            "playwright>=1.45",
            "import-linter>=2.1",
            # The real client libraries of Vertex AI and Posit Connect, talking to local fakes
            # of those services (tests/cloudml, tests/connect).
            "google-cloud-aiplatform>=2.7.0",
            "rsconnect-python>=1.32",
            # gs:// model base paths of the tfserving target, tested against the emulator.
            "google-cloud-storage>=2.14",
            "gcp-storage-emulator>=2024.8",
            # A self-signed certificate for the fake Connect served over HTTPS (tests/connect).
            "cryptography>=42",
        ],
        "dev": ["ruff>=0.6", "mypy>=1.11", "types-PyYAML", "import-linter>=2.1"],
    },
)
