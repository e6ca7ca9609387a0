"""The setup variable ``users`` as the playbooks read it (``group_vars/all/users.yml``): what
``global_var_users = alice, bob:2001, carol::~/carol.pub`` becomes for the users role and the
SLURM accounting, whether it comes as the configuration's string or as a YAML list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

ANSIBLE = Path(sys.executable).parent / "ansible"


def cluster_users(tmp_path, extra_vars: dict) -> list[dict]:
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    result = subprocess.run([str(ANSIBLE), "localhost", "-m", "ansible.builtin.debug", "-a", "var=cluster_users",
                             "--playbook-dir", str(REPO / "playbooks"), "-e", json.dumps(extra_vars)],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # "localhost | SUCCESS => {...}"
    return json.loads(result.stdout.split("=>", 1)[1])["cluster_users"]


@pytest.mark.parametrize("users", ["alice, bob:2001 ,carol::~/keys/carol.pub,",
                                   ["alice", "bob:2001", "carol::~/keys/carol.pub"]])
def test_users_entries(tmp_path, users):
    assert cluster_users(tmp_path, {"users": users}) == [
        {"name": "alice", "uid": "", "key": ""},
        {"name": "bob", "uid": "2001", "key": ""},
        {"name": "carol", "uid": "", "key": "~/keys/carol.pub"},
    ]


def test_no_users(tmp_path):
    assert cluster_users(tmp_path, {}) == []
    assert cluster_users(tmp_path, {"users": ""}) == []
