"""Find the bundled folders: ``templates/``, ``playbooks/`` and ``drivers/``.

After an install they sit inside the package (see ``package_dir`` in
setup.cfg); in a source checkout they sit beside it, at the top of the tree.
"""
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = {"templates": "templates", "playbooks": "playbooks", "drivers": "drivers"}


@cache
def bundled_dir(name: str) -> Path:
    """Return the folder of the bundled ``name`` (templates, playbooks, drivers)."""
    folder = _BUNDLED[name]
    for candidate in (_PACKAGE / folder, _PACKAGE.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"the bundled '{folder}' folder is missing from {_PACKAGE}: reinstall elasticcluster"
    )


def default_config_template() -> Path:
    """The fully commented configuration written on first run."""
    return bundled_dir("templates") / "config"


def default_playbook() -> Path:
    return bundled_dir("playbooks") / "site.yml"
