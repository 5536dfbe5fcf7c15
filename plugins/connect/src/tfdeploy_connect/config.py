"""The settings of a ``connect`` target: its section of deploy.yaml."""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, SecretStr, field_validator, model_validator

from tfdeploy.plugin import TargetConfig, add_secret, looks_secret

#: The variable the API key is read from when the target's settings give none (as
#: rsconnect-python's own ``CONNECT_API_KEY``).
API_KEY_VARIABLE = "CONNECT_API_KEY"
#: What Connect accepts as a content name.
CONTENT_NAME = re.compile(r"[A-Za-z0-9._-]{3,64}")
#: An environment variable's name.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Where an API key comes from, for the hints of errors about it.
API_KEY_HINT = (
    "create one in Connect (your name at the top right > API Keys > New API Key; a key of a "
    f"publisher or administrator), then export {API_KEY_VARIABLE}=... or set "
    "api_key: ${SOME_VARIABLE} in deploy.yaml (never the key itself)"
)


class ConnectConfig(TargetConfig):
    """Settings of a ``connect`` target."""

    server: str = Field(
        description="The Connect server's URL, e.g. https://connect.example.com "
        "(the address of its dashboard, without /__api__).",
    )
    api_key: SecretStr = Field(
        default=None,  # replaced by $CONNECT_API_KEY's value, or refused, when validated
        validate_default=True,
        description=f"A Connect API key; default: ${API_KEY_VARIABLE}. Write "
        "api_key: ${VARIABLE} to take it from another variable, never the key itself.",
    )
    mode: Literal["app", "tensorflow"] = Field(
        default="app",
        description="app: a FastAPI app running tfdeploy's own server over the bundled "
        "SavedModel (any Connect with Python); tensorflow: Connect's native TensorFlow "
        "hosting (Connect 2024.05+, deprecated by Posit).",
    )
    name: str | None = Field(
        default=None,
        description="The content's name on Connect (3 to 64 letters, digits, '.', '_' or '-'; "
        "unique per publisher); default: the model's name.",
    )
    title: str | None = Field(
        default=None,
        description="The content's title on the dashboard; default: the model's name when the "
        "content is created, and left as it is afterwards.",
    )
    python: str | None = Field(
        default=None,
        description="mode app: the Python versions the content may run on, as a version "
        "specifier ('>=3.10,<3.13'); default: this Python's major.minor.",
    )
    environment: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="mode app: environment variables of the content. Values are never "
        "printed; use ${VAR} for secrets.",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="A PEM (or DER) file with the certificate authority of a server whose "
        "certificate is self-signed.",
    )
    insecure: bool = Field(
        default=False,
        description="Do not check the server's TLS certificate (prefer ca_bundle).",
    )
    access_type: Literal["acl", "logged_in", "all"] | None = Field(
        default=None,
        description="Who may call the content: acl (its owner and collaborators), logged_in "
        "(every Connect user), all (anyone, without a key); default: Connect's own (acl) "
        "when the content is created, and left as it is afterwards.",
    )
    wait_timeout: float = Field(
        default=900.0,
        gt=0,
        description="Seconds to wait for Connect's deploy task (installing packages, starting "
        "the content) before giving up.",
    )
    request_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for an answer to one HTTP request."
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _api_key_from_the_environment(cls, value: Any) -> Any:
        if value is None or value == "":
            value = os.environ.get(API_KEY_VARIABLE)
            if not value:
                raise ValueError(
                    f"no API key: api_key is not set and neither is ${API_KEY_VARIABLE}; "
                    + API_KEY_HINT
                )
        return value

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"server must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/").removesuffix("/__api__")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not CONTENT_NAME.fullmatch(value):
            raise ValueError(
                f"name {value!r} is not a Connect content name: 3 to 64 letters, digits, "
                "'.', '_' or '-'"
            )
        return value

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(
                f"python {value!r} is not a version specifier (e.g. '>=3.10' or '~=3.11.0')"
            ) from None
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_as_strings(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[Any, Any] = {}
        for variable, item in value.items():
            if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
                raise ValueError(
                    f"{variable!r} is not an environment variable name (letters, digits and "
                    "'_', not starting with a digit)"
                )
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, (int, float)):
                item = str(item)
            out[variable] = item
        return out

    @model_validator(mode="after")
    def _check(self) -> ConnectConfig:
        if self.ca_bundle and self.insecure:
            raise ValueError("give ca_bundle or insecure, not both")
        if self.mode == "tensorflow" and (self.python or self.environment):
            raise ValueError(
                "python and environment apply to mode app; in mode tensorflow Connect's own "
                "TensorFlow serves the model and runs no Python of yours"
            )
        for variable, value in self.environment.items():
            if looks_secret(variable):
                add_secret(value.get_secret_value())
        return self
