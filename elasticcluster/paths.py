"""Where elasticcluster keeps its files by default: the one place that names them.

The command line's ``-c``/``-s`` options and the API's ``storage_path`` change
the first two; everything a started cluster owns lives in its storage folder
(``repository.py`` hands those paths out).
"""
from __future__ import annotations

from pathlib import Path

#: the configuration file (and its ``config.d/`` folder of extra files)
DEFAULT_CONFIG = "~/.elasticcluster/config"
#: the folder where started clusters are remembered, one folder per cluster
DEFAULT_STORAGE = "~/.elasticcluster/storage"
#: SSH keys under this folder are elasticcluster's own: made on first use
MANAGED_KEYS = "~/.elasticcluster/keys"


def expand(path: str | Path) -> Path:
    return Path(path).expanduser()
