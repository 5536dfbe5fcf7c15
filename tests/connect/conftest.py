"""Fixtures for tests against the fake Posit Connect server (:mod:`tests.connect.fake_connect`).

- ``connect_api_key``: the API key the fake accepts (random, once per session).
- ``fake_connect_server``: the fake, started once per session on a free port of 127.0.0.1
  (``fake_connect_server.url``); stopped with every app process it started at the end.
- ``fake_connect``: that server for one test, with no pending faults and an empty request log.
- ``targets``: makes ``connect`` targets for the fake (``targets(model_name, mode=..., **settings)``)
  and deletes their content after the test; ``model_name``: a name no other test uses;
  :class:`Recorder`: a progress that keeps what was reported.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.connect.fake_connect import FakeConnect
from tfdeploy_connect import ConnectConfig, ConnectTarget

from tfdeploy.plugin import Progress


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


# --- the connect target against the fake ------------------------------------------------------


class Recorder(Progress):
    """A progress that keeps what a target reported."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.lines: list[str] = []
        self.advances: list[tuple[int, int]] = []
        self.heartbeats = 0

    def step(self, message: str) -> None:
        self.steps.append(message)

    def advance(self, done: int, total: int) -> None:
        self.advances.append((done, total))

    def log(self, line: str) -> None:
        self.lines.append(line)

    def heartbeat(self, waited: float) -> None:
        self.heartbeats += 1

    def text(self) -> str:
        """Everything reported, as one text."""
        return "\n".join([*self.steps, *self.lines])


class Targets:
    """Makes ``connect`` targets for the fake; deletes the content they made afterwards."""

    def __init__(self, fake: FakeConnect, api_key: str) -> None:
        self.fake = fake
        self.api_key = api_key
        self.names: set[str] = set()

    def __call__(
        self,
        model_name: str,
        progress: Progress | None = None,
        *,
        mode: str = "tensorflow",
        **settings: Any,
    ) -> ConnectTarget:
        """A target publishing ``model_name`` (mode tensorflow unless told: the cheap one)."""
        settings.setdefault("api_key", self.api_key)
        config = ConnectConfig(server=self.fake.url, mode=mode, **settings)
        self.names.add(config.name or model_name)
        return ConnectTarget(config, name="connect", model_name=model_name, progress=progress)

    def cleanup(self) -> None:
        """Delete the content items of this test's targets, stopping their app processes."""
        for item in self.fake.content_items():
            if item["name"] in self.names:
                request = urllib.request.Request(
                    f"{self.fake.url}/__api__/v1/content/{item['guid']}",
                    method="DELETE",
                    headers={"Authorization": f"Key {self.api_key}"},
                )
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture
def targets(fake_connect: FakeConnect, connect_api_key: str) -> Iterator[Targets]:
    """Makes ``connect`` targets talking to the fake; their content is deleted after the test."""
    made = Targets(fake_connect, connect_api_key)
    yield made
    made.cleanup()


_names = itertools.count(1)


@pytest.fixture
def model_name() -> str:
    """A model (and content) name no other test of this session uses."""
    return f"connect-test-{next(_names)}"
