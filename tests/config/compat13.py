"""Checks shared by the tests over configuration files in the style of ElastiCluster 1.3.

Each file alone, and each main file with one ``*-auth.conf`` file in
``config.d/``, gives exit status 0 or 2 and never a traceback; every
``[cluster/NAME]`` of the files is either listed or skipped with messages that
say where and what to do.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.config.cfgtools import cluster_names, list_json, listed, skipped, warnings

#: each problem says what is expected, or what to do
WHAT_TO_DO = ("expected", "did you mean", "defined: ", "add one", "remove it", "; add ")
#: a problem starts with FILE:LINE: [type/name]
PROBLEM = re.compile(r"^(?P<file>/\S+?):(?P<line>\d+): \[(cloud|login|setup|cluster)/[^\]]+\]")


def install(tmp_path: Path, main: Path, auth: Path | None = None) -> Path:
    """``main`` as tmp_path/config (mode 0600), and ``auth`` (if given) in tmp_path/config.d/."""
    config = tmp_path / "config"
    shutil.copyfile(main, config)
    config.chmod(0o600)
    if auth is not None:
        (tmp_path / "config.d").mkdir()
        extra = tmp_path / "config.d" / auth.name
        shutil.copyfile(auth, extra)
        extra.chmod(0o600)
    return config


def check_run(cli, config: Path, sources: list[Path]):
    """``list-templates --json`` on ``config``: every template of ``sources`` accounted for, once."""
    result, data = list_json(cli, config)  # asserts: exit 0 or 2, no traceback, JSON on stdout
    expected = set()
    for source in sources:
        expected |= cluster_names(source.read_text())
    assert set(listed(data)) | set(skipped(data)) == expected
    assert not set(listed(data)) & set(skipped(data))
    if result.returncode == 2:
        assert data["templates"] == [] and data["skipped"]
        assert "ERROR: no valid cluster template" in result.stderr
    for name, problems in skipped(data).items():
        assert problems, name
        assert f"ignoring cluster template '{name}'" in result.stderr
        for problem in problems:
            match = PROBLEM.match(problem)
            assert match, problem
            assert match.group("file") in {str(config), *map(str, config.parent.glob("config.d/*"))}
            assert any(hint in problem for hint in WHAT_TO_DO), problem
    # every warning names where it comes from, or the template it is about
    for line in warnings(result.stderr):
        assert str(config.parent) in line or "ignoring cluster template" in line, line
    return result, data
