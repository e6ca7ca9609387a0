"""Shared fixtures: an isolated home folder and a runner for the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: files written for the tests (fixtures of our own: a clone has everything its tests need)
DATA = REPO / "tests" / "data"
#: the real ElastiCluster 1.3 examples, beside the repository on the development machines only
#: (never in a clone): the tests over them are extra checks, skipped where they are absent
COMPAT = REPO.parent / "shared" / "compat" / "elasticluster-1.3"


def pytest_collection_modifyitems(config, items):
    """Two test files run at once (``-n 2 --dist loadgroup`` in setup.cfg: the local cloud's
    tests spend much of their time waiting for nodes, SLURM and timers). Each file runs whole in
    one worker, and every file of ``tests/cloud`` in the same one: their "nodes" are this
    machine (its sshd, its ``/run/elasticcluster-bake``)."""
    for item in items:
        parts = Path(str(item.path)).relative_to(REPO).parts
        group = "tests/cloud" if parts[:2] == ("tests", "cloud") else "/".join(parts)
        item.add_marker(pytest.mark.xdist_group(group))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(autouse=True)
def _cache_of_the_test_run(tmp_path_factory, monkeypatch):
    """Caches (what libcloud's drivers take, list-templates reports) go to a folder of the test
    run, never to the HOME of whoever runs the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME (and cache folder) for this test, for the API and the CLI alike."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    return home


@pytest.fixture
def cli(home):
    """Run ``python -m elasticcluster ARGS`` as a real process; returns a Result."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "elasticcluster", *args], capture_output=True,
                              text=True, env=full_env, input=input, timeout=120)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_config(tmp_path):
    """Write a config file (mode 0600) and return its path."""

    def write(text: str, name: str = "config", mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    return write


#: a complete, valid configuration used by many tests
VALID_CONFIG = """\
[cloud/hobbes]
provider = ec2_boto
ec2_url = http://hobbes.example.org:8773/services/Cloud
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY
ec2_region = nova

[login/gc3-user]
image_user = gc3-user
image_user_sudo = root
image_sudo = True
user_key_name = elasticcluster
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/ansible-slurm]
provider = ansible
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/slurm]
cloud = hobbes
login = gc3-user
setup_provider = ansible-slurm
security_group = default
image_id = ami-00000048
flavor = m1.small
frontend_nodes = 1
compute_nodes = 2
ssh_to = frontend
"""
