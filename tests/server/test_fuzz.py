"""schemathesis against `/openapi.json`: generated requests, valid and not, never get a 5xx
or an answer that breaks the spec, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks as openapi_checks
from tests.server.conftest import http

from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_server(multi_savedmodel: Path) -> Iterator[ServerHandle]:
    handle = serve_savedmodel(multi_savedmodel, port=0, background=True, quiet=True)
    assert handle is not None
    yield handle
    handle.stop()


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


def test_api_conforms_to_its_spec(fuzzed_server: ServerHandle) -> None:
    schema = schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
    answered = fuzzed_server.repository.metrics.requests.total()
    assert answered > 10 * len(operations)  # the run really sent requests


def test_server_still_serves_after_the_fuzzing(fuzzed_server: ServerHandle) -> None:
    body = {"instances": [{"a": [1.0, 2.0, 3.0], "b": [0, 0]}]}
    status, answer = http("POST", fuzzed_server.url + "/serving_default/predict", body)
    assert status == 200 and answer["predictions"][0]["total"] == 6.0
