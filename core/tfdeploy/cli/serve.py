"""``tfdeploy serve``: the local server, a thin layer over :func:`tfdeploy.server.serve_savedmodel`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8089, show_default=True, type=int, help="REST port (0: pick a free one)."
)
@click.option(
    "--grpc-port",
    type=int,
    default=None,
    help="Also serve TF Serving's gRPC API on this port (0: pick a free one).",
)
@click.option("--model-name", default=None, help="Model name in /v1/models/<name> [default].")
@click.option(
    "--model-base-path",
    type=click.Path(path_type=Path),
    default=None,
    help="Serve a base path of integer version folders, polled for new versions.",
)
@click.option(
    "--model-config-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Serve the models of a TF Serving ModelServerConfig text file.",
)
@click.option(
    "--file-system-poll-wait-seconds",
    "poll_seconds",
    type=float,
    default=1.0,
    show_default=True,
    help="How often base paths are polled for new versions (0: never).",
)
@click.option(
    "--max-batch-size",
    type=int,
    default=64,
    show_default=True,
    help="Most instances merged into one model call.",
)
@click.option(
    "--batch-timeout-micros",
    type=int,
    default=0,
    show_default=True,
    help="How long a batch waits for more requests (0: merge only those already waiting).",
)
@click.option(
    "--num-batch-threads",
    type=int,
    default=1,
    show_default=True,
    help="Threads calling the model, per model version.",
)
@click.option(
    "--max-enqueued",
    type=int,
    default=1024,
    show_default=True,
    help="Most requests waiting per model version; beyond it the server answers 503.",
)
@click.option(
    "--max-body-bytes",
    type=int,
    default=32 * 1024 * 1024,
    show_default=True,
    help="Largest request body; larger ones get 413.",
)
@click.option(
    "--max-inflight-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Most bytes of request bodies (REST) and messages (gRPC) being read, parsed, queued "
    "or answered at once; beyond it the server answers 503. [default: 2 x --max-body-bytes]",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's headers; slower ones get 408.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a client has to send a request's body (408 after) and to read its answer.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most open HTTP connections; more are answered 503 and closed.",
)
@click.option(
    "--allow-config-reload",
    is_flag=True,
    default=None,
    help="Accept gRPC HandleReloadConfigRequest (which can point a model at any path) on a "
    "non-loopback --host too. [default: only when --host is loopback]",
)
@click.option(
    "--admin-token",
    envvar="TFDEPLOY_ADMIN_TOKEN",
    default=None,
    metavar="TOKEN",
    help="Require 'authorization: Bearer TOKEN' on HandleReloadConfigRequest "
    "(better: set TFDEPLOY_ADMIN_TOKEN).",
)
@click.option("--browse", is_flag=True, help="Open the docs page in a web browser.")
def serve(path: Path | None, **options: Any) -> None:
    """Serve a SavedModel over REST (R tfdeploy and TF Serving routes) and optionally gRPC.

    PATH is a SavedModel directory, its saved_model.pb, a base path of version folders, or a
    .tar.gz bundle. Instead of PATH, --model-base-path or --model-config-file serve models as
    TF Serving does. Stops on Ctrl-C or SIGTERM after finishing the requests in flight.
    """
    from tfdeploy.server import serve_savedmodel
    from tfdeploy.server.limits import ServerLimits

    inflight = options.pop("max_inflight_bytes")
    options["limits"] = ServerLimits(
        header_timeout=options.pop("header_timeout"),
        body_timeout=options.pop("body_timeout"),
        keep_alive_timeout=options.pop("keep_alive_timeout"),
        max_connections=options.pop("max_connections"),
        max_inflight_bytes=inflight or 2 * options["max_body_bytes"],
    )
    # Each other option is named as serve_savedmodel's parameter of the same meaning.
    serve_savedmodel(path, **options)


COMMANDS = [serve]
