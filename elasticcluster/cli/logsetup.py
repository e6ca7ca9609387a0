"""Logging for the CLI: rich on a terminal, plain lines otherwise, secrets masked."""
from __future__ import annotations

import logging
import sys

from elasticcluster.redact import RedactingFilter

_LEVELS = {0: logging.WARNING, 1: logging.INFO}


def configure(verbosity: int) -> None:
    level = _LEVELS.get(verbosity, logging.DEBUG)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_time=False, show_path=verbosity >= 3,
                                               markup=False, rich_tracebacks=verbosity >= 3)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if verbosity >= 3 else logging.WARNING)
    logging.getLogger("elasticcluster").setLevel(level)
    # libraries speak only with -vvv; their failures reach the user as our own messages
    for name in ("paramiko", "libcloud", "urllib3", "docker"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 3 else logging.CRITICAL)
