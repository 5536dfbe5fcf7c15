"""Secrets that must never be printed: a process-wide register and the mask that hides them.

Values land here from secret config fields (:class:`pydantic.SecretStr`), from ``${VAR}``
references whose variable name looks secret, and from plugins that hold credentials of their
own. Whatever prints text a user or a log may see (error messages, progress, ``--json``
output, tracebacks) passes it through :func:`redact` at the moment it prints; the values
themselves are never rewritten.

A secret is also masked in the forms other code prints it in: escaped as in a ``repr()`` or a
JSON string, percent-encoded as in a URL, and cut at a ``/`` as in a path. Once a secret is
registered, log records (of any logger: tfdeploy's, uvicorn's, a library's), warnings and the
tracebacks of uncaught exceptions are masked too, whoever prints them.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

#: What a secret is replaced with.
MASK = "***"

#: Environment variable names whose values are treated as secrets.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)

_secrets: set[str] = set()
_lock = threading.Lock()
_hooked = False


def add_secret(value: str) -> None:
    """Register ``value`` (and the forms it is printed in) so that :func:`redact` masks it."""
    if not value:
        return
    import json
    import urllib.parse

    # A secret pasted into a path shows in part when an error names only the folders that
    # exist (``/base/<secret part>``): its parts around each "/" are masked too, when long
    # enough to be its own.
    parts = value.split("/")
    pieces = {"/".join(parts[:i]) for i in range(1, len(parts))}
    pieces.update("/".join(parts[i:]) for i in range(1, len(parts)))
    pieces = {p for p in pieces if len(p) >= 8 and not p.rstrip("/").endswith(":")}
    forms: set[str] = set()
    for piece in {value, *pieces}:
        forms.update(
            (
                piece,
                repr(piece)[1:-1],
                json.dumps(piece)[1:-1],
                json.dumps(piece, ensure_ascii=False)[1:-1],
                urllib.parse.quote(piece),
                urllib.parse.quote(piece, safe=""),
                urllib.parse.quote_plus(piece),
            )
        )
    with _lock:
        _secrets.update(f for f in forms if f)
    _install_hooks()


def looks_secret(name: str) -> bool:
    """Whether a variable or setting called ``name`` probably holds a credential."""
    return SECRET_NAME.search(name) is not None


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _install_hooks() -> None:
    """Mask secrets in what Python itself prints: log records, warnings, thread tracebacks."""
    global _hooked
    with _lock:
        if _hooked:
            return
        _hooked = True
    import logging
    import traceback
    import warnings

    make_record = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
                record.exc_text = record.exc_text.rstrip("\n")
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        except Exception:  # a record that cannot be formatted is left to logging to report
            pass
        return record

    logging.setLogRecordFactory(masked_record)
    format_warning = warnings.formatwarning

    def masked_warning(*args: Any, **kwargs: Any) -> str:
        return redact(format_warning(*args, **kwargs))

    warnings.formatwarning = masked_warning

    def masked_thread_hook(hook_args: Any) -> None:
        if hook_args.exc_type is SystemExit:
            return
        text = "".join(
            traceback.format_exception(
                hook_args.exc_type, hook_args.exc_value, hook_args.exc_traceback
            )
        )
        name = hook_args.thread.name if hook_args.thread is not None else "?"
        print(redact(f"Exception in thread {name}:\n{text}"), file=sys.stderr, end="")

    threading.excepthook = masked_thread_hook
    system_hook = sys.excepthook

    def masked_hook(kind: Any, value: Any, tb: Any) -> None:
        if system_hook is not sys.__excepthook__:
            system_hook(kind, value, tb)
            return
        print(redact("".join(traceback.format_exception(kind, value, tb))), file=sys.stderr, end="")

    sys.excepthook = masked_hook
