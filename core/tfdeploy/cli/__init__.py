"""The ``tfdeploy`` command line: a thin layer over the Python API.

Each module here holds the commands of one area and adds them to :data:`cli`. None of them
imports TensorFlow at import time, so ``tfdeploy --help`` and commands that load no model
stay fast.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from tfdeploy._version import __version__
from tfdeploy.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, echo
from tfdeploy.errors import TfdeployError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="tfdeploy")
def cli() -> None:
    """Export, validate, package, serve, predict and deploy TensorFlow SavedModels.

    Exit codes: 0 success; 1 failure (including a target or server that cannot be reached);
    2 bad usage; 3 verify found a mismatch; 130 interrupted or a confirmation refused. Set
    TFDEPLOY_DEBUG=1 to see tracebacks (secrets masked).
    """


def _register() -> None:
    from tfdeploy.cli import deploy, model, plugins, serve

    for command in [*model.COMMANDS, *serve.COMMANDS, *deploy.COMMANDS, *plugins.COMMANDS]:
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors print one line and exit 1, usage errors exit 2.

    Every message, and with ``TFDEPLOY_DEBUG=1`` every traceback, is printed with secrets
    masked.
    """
    debug = bool(os.environ.get("TFDEPLOY_DEBUG"))
    try:
        # Without standalone mode click returns the code of a raised click.exceptions.Exit.
        code = cli.main(args=argv, prog_name="tfdeploy", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TfdeployError as exc:
        if debug:
            _print_traceback(exc)
        echo(f"Error: {exc.describe()}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if debug:
            _print_traceback(exc)
        echo(
            f"Error: internal error: {type(exc).__name__}: {exc} — run again with "
            "TFDEPLOY_DEBUG=1 for the traceback, and report it",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    if isinstance(code, int) and code:
        sys.exit(code)


def _print_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` with its causes, secrets masked, on stderr."""
    echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)
