"""What the fake Connect server runs for a content item's active bundle.

- :class:`AppProcess`: a ``python-fastapi`` bundle (any ASGI app), started for real in a fresh
  process (``python -m uvicorn <entrypoint>`` in the unpacked bundle, with the content's
  environment variables), and reached through a small reverse proxy.
- :class:`SavedModelRuntime`: a ``tensorflow-saved-model`` bundle, loaded in this process with
  :func:`tfdeploy.load_savedmodel` and answering ``POST /<signature>/predict``.

Both answer :meth:`handle` with a :class:`~tests.connect.fake_http.Reply`; both stop with
:meth:`stop`. :func:`unpack_bundle` extracts a bundle as Connect does and reads its manifest.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tests.connect.fake_http import Reply

if TYPE_CHECKING:
    from tfdeploy import LoadedModel

#: Headers that belong to one connection and are never forwarded by a proxy (RFC 9110 7.6.1),
#: plus those the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
#: Variables an app process inherits from the test process; everything else it gets comes
#: from the content's environment, so the publisher's own secrets never reach the app.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
_PREDICT = re.compile(r"/(?P<signature>[^/]+)/predict/?")


class StartError(Exception):
    """The content could not be started; the message becomes the deploy task's error."""


class Runtime(Protocol):
    """A running content item."""

    def handle(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """Answer one request; ``target`` is the path below the content URL plus any query."""

    def stop(self) -> None:
        """Stop serving and release what the content holds."""


class AppProcess:
    """An ASGI app served by uvicorn in its own process group, on a socket bound here.

    The listening socket is bound before the process starts and handed over with
    ``uvicorn --fd``, so there is no race for a free port; the app has started once a request
    on it gets an HTTP answer (any status).
    """

    def __init__(self, directory: Path, entrypoint: str, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.log_path = directory / ".fake-connect-app.log"
        self._log_offset = 0
        self._log_rest = b""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port: int = listener.getsockname()[1]
            process_env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
            process_env.update(env)
            process_env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
            command = [sys.executable, "-m", "uvicorn", entrypoint, "--fd", str(listener.fileno())]
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    cwd=directory,
                    env=process_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(listener.fileno(),),
                    start_new_session=True,
                )
        finally:
            listener.close()
        self.pid: int = self._process.pid

    def wait_ready(
        self, timeout: float, on_log: Callable[[str], None], stopping: threading.Event
    ) -> None:
        """Wait until the app answers, passing each new line of its log to ``on_log``.

        Raises :class:`StartError` (after stopping the process) when it exits first, does not
        answer within ``timeout`` seconds, or the server is stopping.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self._new_log_lines():
                on_log(line)
            code = self._process.poll()
            if code is not None:
                for line in self._new_log_lines(final=True):
                    on_log(line)
                self.stop()
                raise StartError(f"the application exited with code {code} before it answered")
            if self._answers():
                for line in self._new_log_lines():
                    on_log(line)
                return
            if time.monotonic() > deadline:
                self.stop()
                for line in self._new_log_lines(final=True):
                    on_log(line)
                raise StartError(f"the application did not answer within {timeout:g} seconds")
            if stopping.wait(0.05):
                self.stop()
                raise StartError("the server is shutting down")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _new_log_lines(self, *, final: bool = False) -> list[str]:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                chunk = log.read()
        except FileNotFoundError:
            return []
        self._log_offset += len(chunk)
        data = self._log_rest + chunk
        lines = data.split(b"\n")
        self._log_rest = b"" if final else lines.pop()
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines if line.strip()]

    def handle(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """Forward one request to the app and return its answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "authorization":
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Reply.json(502, {"error": f"the application did not answer: {exc}"})
        finally:
            conn.close()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return Reply(response.status, data, kept)

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self._process.poll() is None

    def stop(self) -> None:
        """Stop the app's whole process group: SIGTERM, then SIGKILL after five seconds."""
        if self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                _signal_group(self._process.pid, signal.SIGKILL)
                self._process.wait(5)
        # A worker the app forked may outlive its parent in the same group.
        _signal_group(self._process.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class SavedModelRuntime:
    """The highest numbered version folder of a bundle, loaded with tfdeploy."""

    def __init__(self, directory: Path) -> None:
        versions = sorted(
            (int(p.name), p)
            for p in directory.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()
        )
        if not versions:
            raise StartError(
                "the bundle has no numbered version folder holding a saved_model.pb "
                "(expected 1/saved_model.pb, 1/variables/...)"
            )
        self.version, path = versions[-1]
        from tfdeploy import load_savedmodel
        from tfdeploy.errors import TfdeployError

        try:
            self._model: LoadedModel = load_savedmodel(path)
        except TfdeployError as err:
            raise StartError(f"TensorFlow could not load version {self.version}: {err}") from err

    def handle(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """``POST /<signature>/predict`` with a contract body; anything else is a 404."""
        from tfdeploy.errors import TfdeployError
        from tfdeploy.predict import wire as contract

        path = target.split("?", 1)[0]
        match = _PREDICT.fullmatch(path)
        if match is None:
            return Reply.json(404, {"error": f"no route {path}; POST /<signature>/predict"})
        if method != "POST":
            return Reply.json(405, {"error": f"{path} accepts POST only"})
        try:
            answer = self._model.predict(contract.loads(body), signature_name=match["signature"])
        except TfdeployError as err:
            return Reply.json(err.http_status, {"error": err.describe()})
        return Reply(200, contract.dumps(answer), [("Content-Type", "application/json")])

    def stop(self) -> None:
        """Nothing to stop: the model is released with this object."""


def unpack_bundle(archive: Path, directory: Path) -> dict[str, Any]:
    """Extract a bundle into ``directory`` (new) and return its manifest.json.

    A bundle whose root holds one folder only is collapsed into it, again and again, as Connect
    does when it extracts bundles.
    """
    directory.mkdir(parents=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(directory, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise StartError(f"the bundle cannot be extracted: {exc}") from exc
    while True:
        entries = list(directory.iterdir())
        if len(entries) != 1 or not entries[0].is_dir():
            break
        inner = entries[0].rename(directory / f".collapsing-{uuid.uuid4().hex}")
        for child in list(inner.iterdir()):
            child.rename(directory / child.name)
        inner.rmdir()
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise StartError("the bundle has no manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StartError(f"the bundle's manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise StartError("the bundle's manifest.json is not a JSON object")
    return manifest


def manifest_app_mode(manifest: dict[str, Any]) -> str:
    """The manifest's ``metadata.appmode``."""
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("appmode"), str):
        raise StartError("the bundle's manifest.json has no metadata.appmode")
    return str(metadata["appmode"])
