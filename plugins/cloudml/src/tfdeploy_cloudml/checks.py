"""Validation checks a ``cloudml`` target adds before a deploy (the ``target_checks`` hook).

Vertex AI serves the ``serving_default`` signature; its prebuilt containers run one
TensorFlow version each, and a model written by a newer one may use operations the container
lacks; and the model must stay within Vertex AI's size limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from tfdeploy.plugin import DEFAULT_SIGNATURE, Check, ExtraCheck, ModelInfo
from tfdeploy_cloudml import containers
from tfdeploy_cloudml.config import CloudMLConfig

#: The largest model Vertex AI serves from a prebuilt container (its documented 10 GB).
MAX_MODEL_BYTES = 10 * 1000**3


def for_config(config: CloudMLConfig) -> list[ExtraCheck]:
    """The checks for a target with these settings."""

    def container(info: ModelInfo) -> Iterable[Check]:
        return [container_check(config, info.tensorflow_version)]

    return [signature_check, container, size_check]


def signature_check(info: ModelInfo) -> Iterable[Check]:
    """Vertex AI predicts through ``serving_default``."""
    name = "cloudml: serving_default signature"
    if DEFAULT_SIGNATURE in info.signatures:
        return [Check(name, "PASS", "Vertex AI predicts through it")]
    found = ", ".join(sorted(info.signatures)) or "none"
    return [
        Check(
            name,
            "FAIL",
            f"Vertex AI predicts through {DEFAULT_SIGNATURE!r} only; the model has: {found}",
            f"export the model with a {DEFAULT_SIGNATURE!r} signature",
        )
    ]


def container_check(config: CloudMLConfig, tensorflow_version: str) -> Check:
    """Whether the serving container's TensorFlow can load a model written by this version."""
    name = "cloudml: TensorFlow version of the serving container"
    model = containers.tf_version(tensorflow_version)
    written = f"TensorFlow {model[0]}.{model[1]}" if model else "an unknown TensorFlow version"
    image = config.serving_container_image
    if image is not None:
        version = containers.image_version(image)
        if version is None:
            return Check(name, "PASS", f"custom image {image}: its TensorFlow is not checked")
        if model is not None and version < model:
            return Check(
                name,
                "WARN",
                f"the model was written by {written}, {image} runs TensorFlow "
                f"{version[0]}.{version[1]}: operations added since may not load",
                "export the model with that TensorFlow version, or serve it with a newer image",
            )
        return Check(name, "PASS", f"{image} can load a model written by {written}")
    gpu = config.accelerator_type is not None
    choice = containers.choose(tensorflow_version, config.region, gpu=gpu)
    if choice.exact:
        return Check(name, "PASS", f"{choice.image} matches the model's {written}")
    if model is not None and choice.image_version > model:
        return Check(
            name,
            "PASS",
            f"no prebuilt image for {written}; {choice.image} (TensorFlow {choice.label}) "
            "loads models written by older versions",
        )
    return Check(
        name,
        "WARN",
        f"no prebuilt Vertex AI image for {written}; deploying with "
        f"{'the newest older one, ' if model else ''}{choice.image} (TensorFlow "
        f"{choice.label}): operations it lacks may not load",
        "set serving_container_image to an image running the model's TensorFlow, or export "
        f"the model with TensorFlow {choice.label}",
    )


def size_check(info: ModelInfo) -> Iterable[Check]:
    """The model fits within Vertex AI's limit for prebuilt containers."""
    name = "cloudml: model size"
    if info.size_bytes > MAX_MODEL_BYTES:
        return [
            Check(
                name,
                "FAIL",
                f"{info.size_bytes:,} bytes; Vertex AI serves models up to {MAX_MODEL_BYTES:,}",
                "shrink the model (quantize, prune) or serve it with a custom container",
            )
        ]
    return [Check(name, "PASS", f"{info.size_bytes:,} bytes (limit {MAX_MODEL_BYTES:,})")]
