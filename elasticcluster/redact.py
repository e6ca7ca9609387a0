"""Keep secrets out of logs: which keys hold secrets, and every registered secret value is
masked in log records."""
from __future__ import annotations

import logging
import re

#: names of configuration keys whose values are secrets (masked in messages and logs)
SECRET_KEY_NAME = re.compile(r"(^key$|secret|password|passwd|token|credential)", re.I)

_SECRETS: set[str] = set()


def register_secrets(values) -> None:
    """Remember ``values`` (cloud keys, passwords) so that logs never show them."""
    _SECRETS.update(v for v in values if isinstance(v, str) and len(v) >= 4)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that formats each record and masks registered secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True
