"""The README's "Python API" section, run as written, on real nodes of the local cloud.

Its first literal block is a library user's script: Configurator, create_cluster,
start, setup, load_cluster, update, resize and stop of a SLURM cluster.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.local.conftest import containers_of

pytestmark = pytest.mark.slow


def readme_python_api() -> str:
    text = (REPO / "README.rst").read_text()
    section = text[text.index("Python API\n==========\n"):]
    lines = section.split("::\n\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


def test_readme_python_api_runs_as_written(local, home):
    code = readme_python_api()
    assert "conf.create_cluster(\"local-slurm\", name=\"mine\")" in code and "cluster.stop()" in code
    assert local("list-templates").returncode == 0  # deploys ~/.elasticcluster/config on first run
    local.started.append("mine")  # the fixture removes its containers whatever happens
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = proc.stdout.splitlines()
    assert printed[0] == "['compute001', 'compute002', 'frontend001']"
    assert printed[1].count(".") == 3  # the frontend's address
    assert printed[2] == "{'compute': 3, 'frontend': 1}"  # after resize(add={"compute": 1})
    # stop() terminated every node (the resized one too) and forgot the cluster
    assert containers_of(local.docker, "mine") == []
    assert not (local.storage / "mine").exists()
    assert local("list").stdout.strip() == "No clusters found."
