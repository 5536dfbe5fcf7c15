"""The ``cloudml`` target: a tfdeploy model as versions of one Vertex AI model on an endpoint.

A deploy, each step found before it is made, so that running it again after any failure picks
up where it stopped and never makes a second model, version, endpoint or deployment:

1. **Look**: the Vertex AI model (fixed id ``tfdeploy-<name>``), its versions (the bundle
   digest is in their labels), the endpoint (display name or numeric id) and what it serves.
   When the bundle's version already serves with the configured share, nothing is done.
2. **Stage** the SavedModel under ``gs://STAGING/tfdeploy/<name>/<digest>/`` (files already
   there are skipped), with byte progress.
3. **Upload** it as a new version of the model (``parent_model`` after the first), digest in
   its labels.
4. **Create the endpoint** if it does not exist.
5. **Deploy** the version to the endpoint with **no traffic** (all of it on an empty
   endpoint), and wait until it serves. Until then the endpoint's split is untouched; a
   deployment that fails to come up changes nothing.
6. **Move traffic** in one request: the new version gets ``traffic_percent``, the version
   that served most keeps the rest (a canary) or nothing. If that fails, the new deployment is
   withdrawn, so the endpoint serves what it served, with the old split.
7. **Undeploy** the deployed models left without traffic. Their versions stay in the registry,
   so a rollback (or roll-forward) can deploy them again.

Long-running operations are polled with a heartbeat and a deadline (:class:`Session.wait`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tfdeploy.plugin import (
    Action,
    Bundle,
    ConfigError,
    DeployResult,
    Plan,
    RemoteError,
    State,
    Status,
    Target,
    TargetError,
    TfdeployError,
    VersionStatus,
)
from tfdeploy_cloudml import bodies, containers, labels, sdk, staging
from tfdeploy_cloudml.boundary import boundary
from tfdeploy_cloudml.config import CloudMLConfig
from tfdeploy_cloudml.session import Session
from tfdeploy_cloudml.state import Observed, created, plan_split, resource_id

#: How often a traffic change that failed in a way worth retrying is sent again.
TRAFFIC_ATTEMPTS = 3


class CloudMLTarget(Target[CloudMLConfig]):
    """Vertex AI (Google CloudML's successor): versions of a model served by an endpoint."""

    Config = CloudMLConfig

    def __init__(self, config: CloudMLConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.session = Session(config, lambda: self.progress)
        self._predictor: Any = None

    # --- names ---------------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The Vertex AI model's id."""
        return labels.model_id(self.model_name)

    @property
    def model_resource(self) -> str:
        """``projects/P/locations/R/models/tfdeploy-NAME``."""
        return f"{self.session.parent}/models/{self.model_id}"

    @property
    def endpoint_ref(self) -> str:
        """The endpoint's display name or numeric id (default: the model's name)."""
        return self.config.endpoint or self.model_name

    def staged_root(self) -> staging.Location:
        """Where this model's bundles are staged, one folder per digest."""
        return staging.Location.parse(self.config.staging_bucket).child(
            "tfdeploy", labels.slug(self.model_name)
        )

    # --- looking -------------------------------------------------------------------------------

    def _find_endpoint(self) -> Any | None:
        ref = self.endpoint_ref
        endpoints = self.session.endpoints
        if ref.isdigit():
            try:
                return self.session.call(
                    f"reading endpoint {ref}",
                    endpoints.get_endpoint,
                    name=f"{self.session.parent}/endpoints/{ref}",
                )
            except RemoteError as exc:
                if exc.code == "NOT_FOUND":
                    return None
                raise
        found = self.session.listed(
            f"looking up endpoint {ref!r}",
            endpoints.list_endpoints,
            request={"parent": self.session.parent, "filter": f'display_name="{ref}"'},
        )
        if len(found) > 1:
            ids = ", ".join(resource_id(e.name) for e in found)
            raise TargetError(
                f"{len(found)} endpoints in {self.config.project}/{self.config.region} are "
                f"named {ref!r} ({ids})",
                hint="set endpoint to the numeric id of the one to use",
            )
        return found[0] if found else None

    def _get_endpoint(self, name: str) -> Any:
        return self.session.call(
            "reading the endpoint", self.session.endpoints.get_endpoint, name=name
        )

    def _find_model(self) -> tuple[Any | None, dict[str, Any]]:
        models = self.session.models
        try:
            model = self.session.call(
                f"reading model {self.model_id}", models.get_model, name=self.model_resource
            )
        except RemoteError as exc:
            if exc.code == "NOT_FOUND":
                return None, {}
            raise
        if model.labels.get(labels.MODEL) != labels.slug(self.model_name):
            raise TargetError(
                f"the Vertex AI model {self.model_id} was not made by tfdeploy for "
                f"{self.model_name!r}",
                hint="delete or rename that model, or deploy under another model name",
            )
        versions = self.session.listed(
            f"listing the versions of {self.model_id}",
            models.list_model_versions,
            name=self.model_resource,
        )
        return model, {v.version_id: v for v in versions}

    def _observe(self) -> Observed:
        model, versions = self._find_model()
        endpoint = self._find_endpoint()
        seen = Observed(endpoint, model, versions)
        if endpoint is not None:
            for deployed in endpoint.deployed_models:
                mine = resource_id(deployed.model) == self.model_id
                (seen.ours if mine else seen.foreign).append(deployed)
        return seen

    def _settled(self, seen: Observed, version: str, percent: int) -> bool:
        """Whether ``version`` serves with ``percent`` and nothing is left to undeploy."""
        deployed = seen.deployed_of(version)
        if not deployed:
            return False
        desired = plan_split(seen.split, seen.ours, deployed[0].id, percent)
        split = seen.split
        return {d.id for d in seen.ours} == set(desired) and all(
            split.get(k, 0) == v for k, v in desired.items()
        )

    def _refuse_foreign(self, seen: Observed) -> None:
        if seen.foreign and seen.endpoint is not None:
            others = ", ".join(sorted({resource_id(d.model) for d in seen.foreign}))
            raise TargetError(
                f"endpoint {seen.endpoint.display_name!r} ({resource_id(seen.endpoint.name)}) "
                f"also serves models tfdeploy did not deploy for {self.model_name!r}: {others}",
                hint="give each model its own endpoint (the endpoint setting)",
            )

    # --- the contract --------------------------------------------------------------------------

    def status(self) -> Status:
        """The endpoint, the model's versions with digest and traffic share, and the URL."""
        seen = self._observe()
        split = seen.split
        rows = []
        for version in sorted(seen.versions, key=int, reverse=True):
            deployed = seen.deployed_of(version)
            share = sum(split.get(d.id, 0) for d in deployed) if deployed else None
            state: State = "serving" if share else ("pending" if deployed else "absent")
            detail = "; ".join(self._describe(d) for d in deployed) or None
            rows.append(
                VersionStatus(
                    version=version,
                    state=state,
                    digest=labels.digest_of(seen.versions[version].labels),
                    labels=tuple(seen.versions[version].version_aliases),
                    traffic_percent=share,
                    detail=detail,
                )
            )
        endpoint = seen.endpoint
        url = f"{self.config.api_base_url}/v1/{endpoint.name}:predict" if endpoint else None
        where = (
            f"endpoint {endpoint.display_name!r} ({resource_id(endpoint.name)})"
            if endpoint
            else f"no endpoint {self.endpoint_ref!r} in {self.config.project}/{self.config.region}"
        )
        serving = seen.serving()
        idle = [d for d in seen.ours if split.get(d.id, 0) == 0]
        if serving is None:
            state = "pending" if seen.ours else "absent"
            return Status(
                target=self.name,
                plugin=self.plugin,
                model=self.model_name,
                state=state,
                url=url,
                versions=tuple(rows),
                detail=f"{where}; no version of {self.model_id} receives traffic",
            )
        detail = where
        if idle:
            ids = ", ".join(d.id for d in idle)
            detail += (
                f"; deployed without traffic: {ids} (a deploy that did not finish: run it again)"
            )
        return Status(
            target=self.name,
            plugin=self.plugin,
            model=self.model_name,
            state="pending" if idle else "serving",
            version=serving,
            digest=labels.digest_of(seen.versions[serving].labels)
            if serving in seen.versions
            else None,
            url=url,
            versions=tuple(rows),
            detail=detail,
        )

    @staticmethod
    def _describe(deployed: Any) -> str:
        resources = deployed.dedicated_resources
        machine = resources.machine_spec.machine_type or "?"
        low, high = resources.min_replica_count, resources.max_replica_count
        return f"deployed model {deployed.id} on {low}-{high} × {machine}"

    def plan(self, bundle: Bundle) -> Plan:
        """What a deploy would stage, upload, create, deploy, move and undeploy."""
        seen = self._observe()
        digest = bundle.manifest.digest
        current = seen.serving()
        current_digest = (
            labels.digest_of(seen.versions[current].labels) if current in seen.versions else None
        )
        version = seen.version_with(digest)
        percent = self.config.traffic_percent
        if version is not None and self._settled(seen, version, percent):
            return Plan(self.name, "noop", current, current_digest, digest)
        changes = []
        if version is None:
            version = str(max((int(v) for v in seen.versions), default=0) + 1)
            where = self.staged_root().child(digest.removeprefix("sha256:"))
            image = self.config.serving_container_image or (
                "the prebuilt TensorFlow image for TensorFlow "
                f"{bundle.manifest.tensorflow_version or '(unknown)'}"
            )
            changes += [
                f"stage the SavedModel ({bundle.manifest.size_bytes:,} bytes) in {where.uri}",
                f"upload it as version {version} of Vertex AI model {self.model_id} ({image})",
            ]
        if seen.endpoint is None:
            changes.append(f"create endpoint {self.endpoint_ref!r}")
        deployed = seen.deployed_of(version)
        if not deployed:
            low, high = self.config.replicas
            changes.append(
                f"deploy version {version} on {low}-{high} × {self.config.machine_type}"
                + (
                    f" with {self.config.accelerator_count} × {self.config.accelerator_type}"
                    if self.config.accelerator_type
                    else ""
                )
            )
        target_id = deployed[0].id if deployed else "new"
        desired = plan_split(seen.split, seen.ours, target_id, percent)
        by_id = {d.id: d.model_version_id for d in seen.ours}
        shares = ", ".join(f"version {by_id.get(k, version)} {v}%" for k, v in desired.items())
        changes.append(f"traffic: {shares}")
        for d in seen.ours:
            if d.id not in desired:
                changes.append(f"undeploy deployed model {d.id} (version {d.model_version_id})")
        action: Action = "update" if seen.ours else "create"
        return Plan(self.name, action, current, current_digest, digest, tuple(changes))

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Stage, upload a version, deploy it without traffic, move traffic, undeploy the rest."""
        manifest = bundle.manifest
        self._machine_spec()  # a settings error stops the deploy before anything is sent
        self.progress.step(
            f"looking up {self.model_name} in Vertex AI ({self.config.project}, "
            f"{self.config.region})"
        )
        seen = self._observe()
        self._refuse_foreign(seen)
        version = seen.version_with(manifest.digest)
        if version is not None and self._settled(seen, version, self.config.traffic_percent):
            return DeployResult(
                status=self.status(),
                changed=False,
                message=f"version {version} serves {manifest.digest} already",
            )
        sent = 0
        if version is None:
            where = self.staged_root().child(manifest.digest.removeprefix("sha256:"))
            sent = staging.stage(self.session.storage, bundle.model_dir, where, self.progress)
            version = self._upload(seen, bundle, where)
        endpoint = seen.endpoint or self._create_endpoint()
        self._roll_out(endpoint, version, self.config.traffic_percent)
        status = self.status()
        return DeployResult(
            status=status,
            changed=True,
            bytes_sent=sent,
            message=f"version {version} serves {self.config.traffic_percent}% of endpoint "
            f"{self.endpoint_ref!r}",
        )

    def _upload(self, seen: Observed, bundle: Bundle, where: staging.Location) -> str:
        """Upload the staged model as a new version; returns its version id."""
        manifest = bundle.manifest
        gapic = sdk.gapic()
        image = self.config.serving_container_image
        if image is None:
            gpu = self.config.accelerator_type is not None
            image = containers.choose(
                manifest.tensorflow_version, self.config.region, gpu=gpu
            ).image
        model = gapic.Model(
            display_name=self.model_name,
            description=f"tfdeploy model {self.model_name}",
            artifact_uri=where.uri,
            container_spec=gapic.ModelContainerSpec(image_uri=image),
            labels=labels.for_version(self.model_name, manifest.digest, self.config.labels),
            version_description=(
                f"tfdeploy bundle {manifest.digest} (TensorFlow "
                f"{manifest.tensorflow_version or 'unknown'}, tfdeploy {manifest.tfdeploy_version})"
            ),
            version_aliases=["default"] if self.config.traffic_percent == 100 else [],
        )
        request: dict[str, Any] = {"parent": self.session.parent, "model": model}
        if seen.model is None:
            request["model_id"] = self.model_id
        else:
            request["parent_model"] = seen.model.name
        self.progress.step(f"uploading a new version of Vertex AI model {self.model_id} ({image})")
        try:
            operation = self.session.call(
                "uploading the model", self.session.models.upload_model, request=request
            )
        except RemoteError as exc:
            if exc.code != "ALREADY_EXISTS" or seen.model is not None:
                raise
            # An earlier upload whose answer was lost made the model meanwhile: look again.
            again = self._observe()
            found = again.version_with(manifest.digest)
            if found is not None:
                return found
            return self._upload(again, bundle, where)
        response = self.session.wait(operation, f"uploading version of {self.model_id}")
        version = str(response.model_version_id)
        self.progress.step(f"uploaded version {version} of {self.model_id}")
        return version

    def _create_endpoint(self) -> Any:
        ref = self.endpoint_ref
        gapic = sdk.gapic()
        endpoint = gapic.Endpoint(
            display_name=self.model_name if ref.isdigit() else ref,
            description=f"tfdeploy model {self.model_name}",
            labels={**self.config.labels, labels.MODEL: labels.slug(self.model_name)},
        )
        request: dict[str, Any] = {"parent": self.session.parent, "endpoint": endpoint}
        if ref.isdigit():
            request["endpoint_id"] = ref
        self.progress.step(f"creating endpoint {ref!r}")
        try:
            operation = self.session.call(
                "creating the endpoint", self.session.endpoints.create_endpoint, request=request
            )
        except RemoteError as exc:
            if exc.code == "ALREADY_EXISTS" and ref.isdigit():
                return self._get_endpoint(f"{self.session.parent}/endpoints/{ref}")
            raise
        return self.session.wait(operation, f"creating endpoint {ref!r}")

    def _roll_out(self, endpoint: Any, version: str, percent: int) -> None:
        """Steps 5-7: deploy ``version`` without traffic, move traffic, undeploy the rest."""
        seen = Observed(endpoint, None)
        seen.ours = [d for d in endpoint.deployed_models if resource_id(d.model) == self.model_id]
        deployed = seen.deployed_of(version)
        created = None
        if deployed:
            target_id = deployed[0].id
        else:
            target_id = created = self._deploy_version(endpoint, version)
            endpoint = self._get_endpoint(endpoint.name)
        try:
            ours = [d for d in endpoint.deployed_models if resource_id(d.model) == self.model_id]
            desired = plan_split(dict(endpoint.traffic_split), ours, target_id, percent)
            self._set_traffic(endpoint, desired)
        except BaseException:
            if created is not None:
                self._withdraw(endpoint.name, created)
            raise
        endpoint = self._get_endpoint(endpoint.name)
        leftovers = [
            d
            for d in endpoint.deployed_models
            if resource_id(d.model) == self.model_id and d.id not in desired
        ]
        for d in leftovers:
            try:
                self._undeploy(endpoint.name, d)
            except TfdeployError as exc:
                raise TargetError(
                    f"version {version} serves, but undeploying deployed model {d.id} (version "
                    f"{d.model_version_id}, no traffic) failed: {exc.message}",
                    hint="run the deploy again to finish",
                    code=exc.code,
                    retryable=exc.retryable,
                ) from exc

    def _deploy_version(self, endpoint: Any, version: str) -> str:
        """Deploy ``version`` without traffic (all of it on an empty endpoint); its id."""
        gapic = sdk.gapic()
        split = dict(endpoint.traffic_split)
        existing = [d.id for d in endpoint.deployed_models]
        if sum(split.values()) == 100:
            traffic = {**split, "0": 0}
        else:
            traffic = {**dict.fromkeys(existing, 0), "0": 100}
        low, high = self.config.replicas
        deployed = gapic.DeployedModel(
            model=f"{self.model_resource}@{version}",
            display_name=f"{self.model_name}-v{version}",
            dedicated_resources=gapic.DedicatedResources(
                machine_spec=self._machine_spec(), min_replica_count=low, max_replica_count=high
            ),
        )
        if self.config.service_account:
            deployed.service_account = self.config.service_account
        name = endpoint.display_name
        self.progress.step(
            f"deploying version {version} to endpoint {name!r} on {low}-{high} × "
            f"{self.config.machine_type} (the endpoint's traffic stays as it is until it serves)"
        )
        operation = self.session.call(
            f"deploying version {version}",
            self.session.endpoints.deploy_model,
            endpoint=endpoint.name,
            deployed_model=deployed,
            traffic_split=traffic,
        )
        response = self.session.wait(operation, f"deploying version {version} to {name!r}")
        return str(response.deployed_model.id)

    def _machine_spec(self) -> Any:
        """The machine of each replica; an accelerator Vertex AI does not know is a config error."""
        gapic = sdk.gapic()
        machine = gapic.MachineSpec(machine_type=self.config.machine_type)
        if self.config.accelerator_type is not None:
            try:
                machine.accelerator_type = gapic.AcceleratorType[self.config.accelerator_type]
            except KeyError:
                known = ", ".join(n for n in gapic.AcceleratorType.__members__ if "UNSPEC" not in n)
                raise ConfigError(
                    f"accelerator_type {self.config.accelerator_type!r} is unknown to Vertex AI",
                    hint=f"one of {known}",
                ) from None
            machine.accelerator_count = self.config.accelerator_count or 1
        return machine

    def _set_traffic(self, endpoint: Any, desired: Mapping[str, int]) -> None:
        """Give each deployed model its share of ``desired`` (0 for the others), in one request."""
        full = {d.id: desired.get(d.id, 0) for d in endpoint.deployed_models}
        current = {d.id: endpoint.traffic_split.get(d.id, 0) for d in endpoint.deployed_models}
        if full == current:
            return
        versions = {d.id: d.model_version_id for d in endpoint.deployed_models}
        shares = ", ".join(f"version {versions[k]} {v}%" for k, v in full.items() if v)
        self.progress.step(f"moving traffic: {shares}")
        gapic = sdk.gapic()
        body = gapic.Endpoint(name=endpoint.name, traffic_split=full)
        for attempt in range(TRAFFIC_ATTEMPTS):
            try:
                self.session.call(
                    "changing the traffic split",
                    self.session.endpoints.update_endpoint,
                    endpoint=body,
                    update_mask={"paths": ["traffic_split"]},
                )
                return
            except RemoteError as exc:
                # The same split sent twice is the same split: retrying cannot double anything.
                if not exc.retryable or attempt == TRAFFIC_ATTEMPTS - 1:
                    raise
                self.progress.step(f"{exc.message}; sending it again")
                self.progress.heartbeat(0.0)
                time.sleep(self.config.poll_interval * 2**attempt)

    def _undeploy(self, endpoint_name: str, deployed: Any) -> None:
        self.progress.step(
            f"undeploying deployed model {deployed.id} (version {deployed.model_version_id})"
        )
        operation = self.session.call(
            f"undeploying deployed model {deployed.id}",
            self.session.endpoints.undeploy_model,
            endpoint=endpoint_name,
            deployed_model_id=deployed.id,
        )
        self.session.wait(operation, f"undeploying deployed model {deployed.id}")

    def _withdraw(self, endpoint_name: str, deployed_id: str) -> None:
        """Undeploy a deployment that never got traffic, after a failed traffic change."""
        try:
            endpoint = self._get_endpoint(endpoint_name)
            found = [d for d in endpoint.deployed_models if d.id == deployed_id]
            if not found:
                return
            if endpoint.traffic_split.get(deployed_id, 0) > 0:
                self.progress.step("the traffic change went through after all")
                return
            self.progress.step(
                f"withdrawing deployed model {deployed_id}: the endpoint keeps its old split"
            )
            self._undeploy(endpoint_name, found[0])
        except TfdeployError as exc:
            self.progress.step(
                f"could not withdraw deployed model {deployed_id} ({exc.message}); it gets no "
                "traffic; run the deploy again to finish it"
            )

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Predict through ``Endpoint.predict``, in requests that fit Vertex AI's body limit."""
        rows, columnar = bodies.rows_of(request)
        chunks = list(bodies.batches(rows))
        endpoint = self._prediction_endpoint()
        predictions: list[Any] = []
        for chunk in chunks:
            with boundary("predicting", self.session.where):
                answer = endpoint.predict(instances=chunk, timeout=self.config.request_timeout)
            predictions.extend(answer.predictions)
        return bodies.answer(predictions, columnar)

    def _prediction_endpoint(self) -> Any:
        if self._predictor is None:
            found = self._find_endpoint()
            if found is None:
                raise TargetError(
                    f"nothing to predict with: no endpoint {self.endpoint_ref!r} in "
                    f"{self.config.project}/{self.config.region}",
                    hint=f"deploy first: tfdeploy deploy --target {self.name}",
                )
            self._predictor = self.session.prediction_endpoint(found.name)
        return self._predictor

    def rollback(self, to: str | None = None, *, discard: bool = False) -> Status:
        """Serve the version before the newest serving one (or version or alias ``to``) again.

        It is deployed again if it was undeployed; the version it replaces stays in the
        registry (and its staged files in Cloud Storage), so ``rollback --to`` it rolls forward,
        unless ``discard``: then that version and its staged files are deleted.
        """
        seen = self._observe()
        if seen.endpoint is None or not seen.ours:
            raise TargetError(
                f"nothing of {self.model_name!r} is deployed to endpoint {self.endpoint_ref!r}, "
                "so there is nothing to roll back"
            )
        self._refuse_foreign(seen)
        split = seen.split
        live = [int(d.model_version_id) for d in seen.ours if split.get(d.id, 0) > 0]
        newest = max(live) if live else None
        if to is None:
            earlier = [int(v) for v in seen.versions if newest is None or int(v) < newest]
            if not earlier:
                raise TargetError(
                    f"version {newest} is the oldest version of {self.model_id}",
                    hint="tfdeploy rollback --to VERSION serves another version",
                )
            goal = str(max(earlier))
        else:
            goal = self._resolve(seen, to)
        self.progress.step(f"rolling back from version {newest} to version {goal}")
        self._roll_out(seen.endpoint, goal, 100)
        self.session.call(
            f"making version {goal} the default",
            self.session.models.merge_version_aliases,
            name=f"{self.model_resource}@{goal}",
            version_aliases=["default"],
        )
        if discard and newest is not None and str(newest) != goal:
            self._discard_version(seen, str(newest))
        return self.status()

    def _discard_version(self, seen: Observed, version: str) -> None:
        """Delete ``version`` (no longer deployed) and, unless another version uses them, its
        staged files."""
        digest = labels.digest_of(seen.versions[version].labels)
        self.progress.step(f"deleting version {version}, which the rollback replaced (--discard)")
        operation = self.session.call(
            f"deleting version {version}",
            self.session.models.delete_model_version,
            name=f"{self.model_resource}@{version}",
        )
        self.session.wait(operation, f"deleting version {version}")
        shared = any(
            labels.digest_of(m.labels) == digest for v, m in seen.versions.items() if v != version
        )
        if digest and not shared:
            where = self.staged_root().child(digest.removeprefix("sha256:"))
            removed = staging.remove(self.session.storage, where)
            self.progress.step(f"deleted {removed} staged files under {where.uri}")

    def _resolve(self, seen: Observed, to: str) -> str:
        if to in seen.versions:
            return to
        for version, model in seen.versions.items():
            if to in model.version_aliases:
                return str(version)
        known = ", ".join(sorted(seen.versions, key=int)) or "none"
        raise TargetError(f"{self.model_id} has no version or alias {to!r} (versions: {known})")

    def undeploy(self) -> Status:
        """Undeploy every version; with ``delete_on_undeploy`` also delete endpoint and model."""
        seen = self._observe()
        endpoint = seen.endpoint
        if endpoint is not None and seen.ours:
            self._undeploy_all(seen)
            endpoint = self._get_endpoint(endpoint.name)
        if self.config.delete_on_undeploy:
            if endpoint is not None and not endpoint.deployed_models:
                self.progress.step(f"deleting endpoint {endpoint.display_name!r}")
                operation = self.session.call(
                    "deleting the endpoint",
                    self.session.endpoints.delete_endpoint,
                    name=endpoint.name,
                )
                self.session.wait(operation, "deleting the endpoint")
            elif endpoint is not None:
                self.progress.step("the endpoint serves other models; it stays")
            if seen.model is not None:
                self.progress.step(f"deleting Vertex AI model {self.model_id} and its versions")
                operation = self.session.call(
                    "deleting the model", self.session.models.delete_model, name=seen.model.name
                )
                self.session.wait(operation, "deleting the model")
            root = self.staged_root()
            removed = staging.remove(self.session.storage, root)
            self.progress.step(f"deleted {removed} staged files under {root.uri}")
        return self.status()

    def _undeploy_all(self, seen: Observed) -> None:
        endpoint = seen.endpoint
        assert endpoint is not None
        split = seen.split
        ours = sorted(seen.ours, key=lambda d: (split.get(d.id, 0), created(d)))
        if seen.foreign:
            shares = {d.id: split.get(d.id, 0) for d in seen.foreign}
            total = sum(shares.values())
            if total == 0:
                desired = {seen.foreign[0].id: 100}
            else:
                desired = {k: v * 100 // total for k, v in shares.items()}
                top = max(shares, key=lambda k: shares[k])
                desired[top] += 100 - sum(desired.values())
            self._set_traffic(endpoint, desired)
            last: list[Any] = []
        else:
            self._set_traffic(endpoint, {ours[-1].id: 100})
            ours, last = ours[:-1], ours[-1:]
        for d in [*ours, *last]:
            self._undeploy(endpoint.name, d)

    def close(self) -> None:
        """Close the clients."""
        self._predictor = None
        self.session.close()
