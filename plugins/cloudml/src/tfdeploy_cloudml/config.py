"""The settings of a ``cloudml`` target: its section of deploy.yaml (or ``-C`` settings).

Nothing here is secret: credentials come from a key file named by ``credentials_file`` (whose
contents tfdeploy never prints) or from Application Default Credentials.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tfdeploy.plugin import TargetConfig
from tfdeploy_cloudml import labels as label_rules

_REGION = re.compile(r"^[a-z]+(?:-[a-z0-9]+)+$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]{3,61}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::\d+)?$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")


class CloudMLConfig(TargetConfig):
    """Settings of a ``cloudml`` (Vertex AI) target."""

    project: str = Field(description="Google Cloud project id.")
    region: str = Field(
        default="us-central1", description="Vertex AI region (location), e.g. europe-west4."
    )
    staging_bucket: str = Field(
        description="gs://bucket[/prefix] where the SavedModel is staged for Vertex AI, under "
        "tfdeploy/<model>/<digest>/."
    )
    endpoint: str | None = Field(
        default=None,
        description="The endpoint: a display name (created if missing) or a numeric endpoint "
        "id. Default: the model's name.",
    )
    machine_type: str = Field(
        default="n1-standard-2", description="Machine type of each serving replica."
    )
    min_replicas: int = Field(default=1, ge=1, description="Replicas always running (billed).")
    max_replicas: int | None = Field(
        default=None, ge=1, description="Upper bound for autoscaling (default: min_replicas)."
    )
    accelerator_type: str | None = Field(
        default=None, description="GPU per replica, e.g. NVIDIA_TESLA_T4 (with accelerator_count)."
    )
    accelerator_count: int | None = Field(
        default=None, ge=1, description="How many accelerators each replica gets."
    )
    serving_container_image: str | None = Field(
        default=None,
        description="Serving container image. Default: Vertex AI's prebuilt TensorFlow "
        "container for the TensorFlow version that wrote the model (else the newest older one).",
    )
    traffic_percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Share of traffic the new version gets; less than 100 keeps the rest on the "
        "version that served before (a canary).",
    )
    service_account: str | None = Field(
        default=None, description="Service account the serving replicas run as."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to the endpoint and model versions."
    )
    api_endpoint: str | None = Field(
        default=None,
        description="Vertex AI API host (default: REGION-aiplatform.googleapis.com), or a full "
        "URL: http://host:port speaks plain-HTTP REST (private endpoints, emulators, tests).",
    )
    credentials_file: str | None = Field(
        default=None,
        description="Path of a service-account key file (default: Application Default "
        "Credentials). Its contents are never printed.",
    )
    anonymous: bool = Field(
        default=False,
        description="Send no credentials at all: for emulators and tests only.",
    )
    delete_on_undeploy: bool = Field(
        default=False,
        description="undeploy also deletes the endpoint, the Vertex AI model with all its "
        "versions and the staged files (tfdeploy undeploy -C delete_on_undeploy=true).",
    )
    operation_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds to wait for one long-running operation (a deploy takes minutes).",
    )
    poll_interval: float = Field(
        default=2.0,
        ge=0,
        description="Seconds before the second poll of an operation; later polls wait up to 30 s.",
    )
    request_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for the answer to one API request."
    )

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _PROJECT.match(value):
            raise ValueError(f"{value!r} is not a Google Cloud project id")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not a region such as us-central1")
        return value

    @field_validator("staging_bucket")
    @classmethod
    def _staging_bucket(cls, value: str) -> str:
        if not value.startswith("gs://") or not value[5:].split("/", 1)[0]:
            raise ValueError("must be gs://bucket or gs://bucket/prefix")
        return value.rstrip("/")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 128 or any(c in value for c in '"\\')):
            raise ValueError(
                "must be a numeric endpoint id or a display name of 1-128 characters "
                "without quotes or backslashes"
            )
        return value

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator(cls, value: str | None) -> str | None:
        if value is not None and not _ACCELERATOR.match(value):
            raise ValueError(f"{value!r} is not an accelerator type such as NVIDIA_TESLA_T4")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            problem = label_rules.problem(key, text)
            if problem:
                raise ValueError(f"label {key!r}: {problem}")
        if len(value) > label_rules.MAX_USER_LABELS:
            raise ValueError(f"at most {label_rules.MAX_USER_LABELS} labels")
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _api_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be a host, or an http:// or https:// URL")
            if parts.path.strip("/") or parts.query:
                raise ValueError("give the URL without a path: http://host:port")
            return value.rstrip("/")
        if not _HOST.match(value):
            raise ValueError("must be a host such as europe-west4-aiplatform.googleapis.com")
        return value

    @model_validator(mode="after")
    def _check(self) -> CloudMLConfig:
        if (self.accelerator_type is None) != (self.accelerator_count is None):
            raise ValueError("accelerator_type and accelerator_count go together")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must not be less than min_replicas")
        if self.anonymous and self.credentials_file:
            raise ValueError("anonymous and credentials_file exclude each other")
        return self

    @property
    def replicas(self) -> tuple[int, int]:
        """(min, max) replica counts."""
        return self.min_replicas, self.max_replicas or self.min_replicas

    @property
    def api_base_url(self) -> str:
        """The API's base URL: ``https://REGION-aiplatform.googleapis.com`` unless configured."""
        if self.api_endpoint is None:
            return f"https://{self.region}-aiplatform.googleapis.com"
        if "://" in self.api_endpoint:
            return self.api_endpoint
        return f"https://{self.api_endpoint}"

    @property
    def client_endpoint(self) -> str:
        """What the client libraries take as ``api_endpoint`` (a host, or a URL with a scheme)."""
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"
