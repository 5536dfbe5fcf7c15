"""The REST request path in process: parse, check, feed the model, encode the answer.

    .venv/bin/python benchmarks/request_path.py [--requests 2000] [--rounds 3]

Drives the ASGI app of ``tfdeploy serve`` directly (no sockets, no HTTP server), one request
at a time, on the digits model: a one-instance and a 64-instance TF Serving predict, and the
R package's route. The median latency per request is what the server's own code and the model
call cost; run it on two checkouts (``PYTHONPATH=<checkout>/core``) to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any


async def call(app: Any, path: str, body: bytes) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [],
        "raw_path": path.encode(),
    }
    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


async def measure(app: Any, path: str, body: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status = await call(app, path, body)
        times.append(time.perf_counter() - start)
        assert status == 200, status
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tfdeploy import export_savedmodel
    from tfdeploy.examples.digits import load_digits, train
    from tfdeploy.server import create_app

    images, _ = load_digits()
    one = json.dumps({"instances": images[:1].tolist()}).encode()
    many = json.dumps({"instances": images[:64].tolist()}).encode()
    cases = {
        "TF Serving predict, 1 instance": ("/v1/models/default:predict", one),
        "TF Serving predict, 64 instances": ("/v1/models/default:predict", many),
        "R route, 1 instance": ("/serving_default/predict", one),
    }
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(export_savedmodel(train(epochs=1), f"{tmp}/m"), poll_seconds=0)
        try:
            results: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (path, body) in cases.items():
                    times = asyncio.run(measure(app, path, body, args.requests))
                    results[name].append(statistics.median(times))
        finally:
            app.repository.close()
    print(f"{args.requests} requests per case and round, {args.rounds} rounds; median per request")
    for name, medians in results.items():
        print(
            f"{name:<34} {statistics.median(medians) * 1e6:8.0f} us  "
            f"({min(medians) * 1e6:.0f}-{max(medians) * 1e6:.0f})"
        )


if __name__ == "__main__":
    main()
