"""TF Serving's model config file (a text ``ModelServerConfig``): read, change, write.

tfdeploy changes only its own model's entry; other models in the file stay as they are.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from tfdeploy.plugin import TargetError
from tfdeploy_tfserving import protos


def parse(text: str | None, *, where: str) -> Any:
    """The ``ModelServerConfig`` in ``text`` (an empty one for ``None``)."""
    config = protos.ModelServerConfig()
    if text:
        try:
            text_format.Parse(text, config)
        except text_format.ParseError as exc:
            raise TargetError(
                f"{where} is not a model config file tfdeploy can read: {exc}",
                hint="fix the file, or point model_config_file at a new one",
            ) from None
    return config


def render(config: Any) -> str:
    """The text of a config file."""
    return str(text_format.MessageToString(config))


def labels(config: Any, model: str) -> dict[str, int]:
    """The version labels of ``model`` in ``config``."""
    for entry in config.model_config_list.config:
        if entry.name == model:
            return dict(entry.version_labels)
    return {}


def set_model(config: Any, model: str, base_path: str, new_labels: dict[str, int]) -> Any:
    """A copy of ``config`` where ``model`` serves exactly its labelled versions."""
    out = protos.ModelServerConfig()
    out.CopyFrom(config)
    entries = out.model_config_list.config
    entry = next((e for e in entries if e.name == model), None)
    if entry is None:
        entry = entries.add(name=model, model_platform="tensorflow")
    entry.base_path = base_path
    entry.version_labels.clear()
    entry.version_labels.update(new_labels)
    entry.model_version_policy.specific.versions[:] = sorted(set(new_labels.values()))
    return out


def remove_model(config: Any, model: str) -> Any:
    """A copy of ``config`` without ``model``."""
    out = protos.ModelServerConfig()
    out.CopyFrom(config)
    keep = [e for e in out.model_config_list.config if e.name != model]
    del out.model_config_list.config[:]
    out.model_config_list.config.extend(keep)
    return out
