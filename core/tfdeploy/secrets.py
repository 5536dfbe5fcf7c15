"""Secrets that must never be printed: a process-wide register and the mask that hides them.

Values land here from secret config fields (:class:`pydantic.SecretStr`), from ``${VAR}``
references whose variable name looks secret, and from plugins that hold credentials of their
own. Whatever prints text a user or a log may see (error messages, progress, ``--json``
output, tracebacks) passes it through :func:`redact` at the moment it prints; the values
themselves are never rewritten.
"""

from __future__ import annotations

import re
import threading

#: What a secret is replaced with.
MASK = "***"

#: Environment variable names whose values are treated as secrets.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)

_secrets: set[str] = set()
_lock = threading.Lock()


def add_secret(value: str) -> None:
    """Register ``value`` so that :func:`redact` masks it from now on."""
    if value:
        with _lock:
            _secrets.add(value)


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
