"""The servers compared: ``tfdeploy serve`` and its peers, each in its own environment.

A peer's environment is ``benchmarks/.venv-<peer>``, made on first use with pip: the peer's
pinned package and the main environment's TensorFlow version (so every server calls the same
SavedModel signature with the same TensorFlow), or any TensorFlow pip can pair with the peer
if that pin cannot be met. A peer that cannot install or start here is reported, with pip's or
its own words, and never silently left out. Each peer runs with its default settings, apart
from the ports, and with two workers (or model instances: the peer's own knob).

The scripts the peers run are in ``benchmarks/peer_servers/``; they use only the peer's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
from servers import (
    Server,
    ServerError,
    command_lines,
    free_port,
    launch,
    start_tfdeploy,
    wait_ready,
)

BENCH = Path(__file__).resolve().parent
SCRIPTS = BENCH / "peer_servers"


class PeerUnavailable(Exception):
    """A peer cannot be installed or run on this machine; the message says why."""


def _tail(text: str, lines: int = 6) -> str:
    kept = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("WARNING: Location")  # a local mirror's noise
    ]
    return "\n".join(kept[-lines:])


def ensure_env(name: str, requirement: str, tf_version: str) -> Path:
    """The Python of ``benchmarks/.venv-<name>``, creating the environment on first use."""
    venv = BENCH / f".venv-{name}"
    python = venv / "bin" / "python"
    marker = venv / "bench-requirements.txt"
    wanted = [[requirement, f"tensorflow=={tf_version}"], [requirement, "tensorflow"]]
    if python.exists() and marker.exists() and marker.read_text().splitlines() in wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    errors = []
    for requirements in wanted:
        print(f"==> installing {' '.join(requirements)} into {venv} (once; large)", flush=True)
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *requirements,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            marker.write_text("\n".join(requirements) + "\n")
            return python
        errors.append(f"pip install {' '.join(requirements)}:\n{_tail(done.stderr + done.stdout)}")
    raise PeerUnavailable("\n".join(errors))


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    """The installed versions of ``packages`` (and Python) in the environment of ``python``."""
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "out = {'python': platform.python_version()}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out[p] = 'missing'\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


class Peer:
    """One server program: how to install it, start it on a model, call it and read its answer."""

    name = ""
    label = ""
    requirement = ""
    package = ""
    knob = "workers"
    default_workers = 1
    #: ``v1``: ``{"instances": ...}`` bodies; ``v2``: the KServe v2 / Triton inference protocol.
    protocol = "v1"

    def __init__(self) -> None:
        self.python = Path(sys.executable)
        self.versions: dict[str, str] = {}

    def install(self, tf_version: str) -> None:
        """Make the peer's environment (once) and read its versions."""
        self.python = ensure_env(self.name, self.requirement, tf_version)
        self.versions = versions(self.python, [self.package, "tensorflow", "numpy"])

    def prepare(self, models: dict[str, Path], workdir: Path) -> None:
        """Anything the peer needs once per run before it serves the models."""

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        """Start the peer serving ``model_dir`` as ``model`` (workers None: the default)."""
        raise NotImplementedError

    def predict_url(self, server: Server, model: str) -> str:
        """The URL the payload bodies are POSTed to."""
        raise NotImplementedError

    def predictions(self, answer: Any) -> np.ndarray:
        """The probabilities in a decoded answer, shape (instances, 10)."""
        return np.asarray(answer["predictions"], dtype=np.float64)

    def row_label(self, workers: int | None) -> str:
        """The table's name for this peer with ``workers``."""
        version = self.versions.get(self.package, "")
        short = ".".join(version.split(".")[:2]) if version else ""
        count = self.default_workers if workers is None else workers
        unit = self.knob if count != 1 else self.knob.removesuffix("s")
        knob = f"{count} {unit}" + (" (default)" if workers is None else "")
        return f"{self.label} {short}, {knob}".replace("  ", " ")


class Tfdeploy(Peer):
    """``tfdeploy serve`` of this checkout, in the main environment."""

    name = "tfdeploy"
    label = "`tfdeploy serve`"
    package = "tfdeploy-kit"
    knob = "processes"

    def __init__(self, has_workers: bool) -> None:
        super().__init__()
        self.has_workers = has_workers

    def install(self, tf_version: str) -> None:
        self.versions = versions(self.python, [self.package, "tensorflow", "numpy", "grpcio"])

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        extra = [] if workers is None else ["--workers", str(workers)]
        return start_tfdeploy(model_dir, workdir / f"tfdeploy-{model}.log", extra)

    def predict_url(self, server: Server, model: str) -> str:
        return server.url + "/serving_default/predict"

    def row_label(self, workers: int | None) -> str:
        count = 1 if workers is None else workers
        unit = "processes" if count != 1 else "process"
        return f"{self.label}, {count} {unit}" + (" (default)" if workers is None else "")


class Mlflow(Peer):
    """``mlflow models serve`` of a pyfunc model whose ``predict`` calls the signature."""

    name = "mlflow"
    label = "MLflow `models serve`"
    requirement = "mlflow==3.17.2"
    package = "mlflow"

    def __init__(self) -> None:
        super().__init__()
        self.pyfuncs: dict[str, Path] = {}

    def prepare(self, models: dict[str, Path], workdir: Path) -> None:
        for model, model_dir in models.items():
            target = workdir / f"mlflow-{model}"
            done = subprocess.run(
                [str(self.python), str(SCRIPTS / "mlflow_model.py"), str(model_dir), str(target)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise PeerUnavailable("writing the pyfunc model failed:\n" + _tail(done.stderr))
            self.pyfuncs[model] = target

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        port = free_port()
        command = [str(self.python.parent / "mlflow"), "models", "serve", "-m"]
        command += [str(self.pyfuncs[model]), "--env-manager", "local"]
        command += ["-h", "127.0.0.1", "-p", str(port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        # MLflow starts `uvicorn` from PATH: its own environment's.
        path = f"{self.python.parent}{os.pathsep}{os.environ['PATH']}"
        env = {"PATH": path, "TMPDIR": str(workdir)}
        server = launch("mlflow", command, workdir / f"mlflow-{model}.log", env=env)
        server.url = f"http://127.0.0.1:{port}"
        wait_ready(server, "/ping")
        return server

    def predict_url(self, server: Server, model: str) -> str:
        return server.url + "/invocations"


class Bentoml(Peer):
    """A BentoML service whose one API calls the signature (``peer_servers/bentoml_service.py``)."""

    name = "bentoml"
    label = "BentoML"
    requirement = "bentoml==1.4.39"
    package = "bentoml"

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        port = free_port()
        command = [str(self.python.parent / "bentoml"), "serve"]
        command += ["bentoml_service:SavedModelService", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--working-dir", str(SCRIPTS)]
        env = {
            "BENCH_SAVEDMODEL": str(model_dir),
            "BENTOML_HOME": str(workdir / "bentoml-home"),
            "BENTOML_DO_NOT_TRACK": "true",
            "TMPDIR": str(workdir),
        }
        if workers is not None:
            env["BENCH_WORKERS"] = str(workers)
        server = launch("bentoml", command, workdir / f"bentoml-{model}.log", env=env)
        server.url = f"http://127.0.0.1:{port}"
        wait_ready(server, "/readyz")
        return server

    def predict_url(self, server: Server, model: str) -> str:
        return server.url + "/predict"

    def predictions(self, answer: Any) -> np.ndarray:
        return np.asarray(answer, dtype=np.float64)


class Kserve(Peer):
    """KServe's model server with a custom ``kserve.Model`` (``peer_servers/kserve_server.py``)."""

    name = "kserve"
    label = "KServe model server"
    requirement = "kserve==0.21.0"
    package = "kserve"

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        port = free_port()
        command = [str(self.python), str(SCRIPTS / "kserve_server.py")]
        command += ["--model_name", model, "--model_dir", str(model_dir)]
        command += ["--http_port", str(port), "--grpc_port", str(free_port())]
        if workers is not None:
            command += ["--workers", str(workers)]
        env = {"TMPDIR": str(workdir)}
        server = launch("kserve", command, workdir / f"kserve-{model}.log", env=env)
        server.url = f"http://127.0.0.1:{port}"
        wait_ready(server, f"/v1/models/{model}")
        return server

    def predict_url(self, server: Server, model: str) -> str:
        return f"{server.url}/v1/models/{model}:predict"


class Pytriton(Peer):
    """PyTriton: Triton's C++ server calling a Python function (``peer_servers/pytriton_server.py``)."""

    name = "pytriton"
    label = "PyTriton (Triton C++ server)"
    requirement = "nvidia-pytriton==0.7.0"
    package = "nvidia-pytriton"
    knob = "model instances"
    protocol = "v2"

    def start(self, model_dir: Path, model: str, workers: int | None, workdir: Path) -> Server:
        port = free_port()
        workspace = workdir / f"pytriton-{model}-{port}"
        command = [str(self.python), str(SCRIPTS / "pytriton_server.py")]
        command += ["--model-name", model, "--model-dir", str(model_dir)]
        command += ["--http-port", str(port), "--grpc-port", str(free_port())]
        command += ["--metrics-port", str(free_port()), "--workspace", str(workspace)]
        if workers is not None:
            command += ["--instances", str(workers)]
        # Triton's Python backend stub links libpython: point it at this interpreter's own.
        libdir = str(sysconfig.get_config_var("LIBDIR") or Path(sys.base_prefix) / "lib")
        library_path = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        server = launch(
            "pytriton",
            command,
            workdir / f"pytriton-{model}.log",
            env={"LD_LIBRARY_PATH": library_path, "TMPDIR": str(workdir)},
        )
        server.url = f"http://127.0.0.1:{port}"
        wait_ready(server, f"/v2/models/{model}/ready")
        # Triton copies the model into a /tmp/folderXXXXXX of its own (whatever TMPDIR says)
        # and leaves it there when it stops: the Python stubs' command lines name it.
        for line in command_lines(server):
            for part in map(Path, line):
                if part.name == "model.py" and part.parent.parent.name.startswith("folder"):
                    server.leftovers.append(part.parent.parent)
        return server

    def predict_url(self, server: Server, model: str) -> str:
        return f"{server.url}/v2/models/{model}/infer"

    def predictions(self, answer: Any) -> np.ndarray:
        output = answer["outputs"][0]
        return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


PEERS: tuple[type[Peer], ...] = (Mlflow, Bentoml, Kserve, Pytriton)


def check(peer: Peer, status: int, raw: bytes, reference: np.ndarray) -> None:
    """Raise ServerError unless the answer is the model's: 10 probabilities per instance."""
    if status != 200:
        raise ServerError(f"{peer.name} answered {status}: {raw[:300]!r}")
    try:
        probs = peer.predictions(json.loads(raw))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ServerError(f"{peer.name} answered something else: {raw[:300]!r}") from exc
    if probs.shape != reference.shape:
        raise ServerError(f"{peer.name} answered shape {probs.shape}, not {reference.shape}")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ServerError(f"{peer.name}'s probabilities sum to {sums.min():.4f}..{sums.max():.4f}")
    diff = float(np.abs(probs - reference).max())
    if diff > 1e-4:
        raise ServerError(f"{peer.name}'s answer differs from the signature's by {diff:.2g}")
