"""Fixtures for tests against the fake Posit Connect server (:mod:`tests.connect.fake_connect`).

- ``connect_api_key``: the API key the fake accepts (random, once per session).
- ``fake_connect_server``: the fake, started once per session on a free port of 127.0.0.1
  (``fake_connect_server.url``); stopped with every app process it started at the end.
- ``fake_connect``: that server for one test, with no pending faults and an empty request log.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from tests.connect.fake_connect import FakeConnect


@pytest.fixture(scope="session")
def connect_api_key() -> str:
    """The API key the session's fake Connect server accepts."""
    return "fake-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def fake_connect_server(
    connect_api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeConnect]:
    """A fake Connect server shared by the session's tests."""
    fake = FakeConnect(connect_api_key, workdir=tmp_path_factory.mktemp("fake-connect"))
    with fake:
        yield fake


@pytest.fixture
def fake_connect(fake_connect_server: FakeConnect) -> Iterator[FakeConnect]:
    """The session's fake Connect server, with no pending faults and an empty request log."""
    fake_connect_server.clear_faults()
    fake_connect_server.clear_requests()
    yield fake_connect_server
    fake_connect_server.clear_faults()
