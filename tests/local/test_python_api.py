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


API_SCRIPT = REPO / "tests" / "cloud" / "data" / "api_face.py"


def test_the_lifecycle_through_the_api_on_local_nodes(local, home):
    """The scenarios of tests/cloud/test_both_faces.py, through a library user's script, on real
    nodes: a failed start that made nothing, an interrupted start then the same start again,
    resize both ways, remove-node, pause and resume, a killed start then stop --force."""
    import json
    import signal
    import time

    from tests.local.conftest import containers_of

    assert local("list-templates").returncode == 0  # deploys the bundled configuration
    config = home / ".elasticcluster" / "config"

    def api(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(API_SCRIPT), str(config), str(local.storage), *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(API_SCRIPT), str(config), str(local.storage), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def names(cluster: str) -> list[str]:
        data = json.loads((local.storage / cluster / "state.json").read_text())["cluster"]
        return sorted(n["name"] for nodes in data["nodes"].values() for n in nodes)

    def wait_for_containers(cluster: str, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(containers_of(local.docker, cluster)) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    local.started.extend(["apil", "apik"])
    # a start that cannot make anything is forgotten
    text = config.read_text()
    config.write_text(text.replace("[cluster/local-slurm]\n", "[cluster/local-bad]\ncloud = local\nlogin = local\n"
                                   "setup_provider = slurm\nimage_id = no/such:image\nflavor = small\n"
                                   "frontend_nodes = 1\n\n[cluster/local-slurm]\n"))
    result = api("start", "apibad", "local-bad")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert not (local.storage / "apibad").exists()

    # interrupted while creating, then the same start again
    proc = popen("start", "apil", "local-slurm", "1")
    wait_for_containers("apil", 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "start local-slurm -n apil" in err, err
    result = api("start", "apil", "local-slurm")
    assert result.returncode == 0, result.stderr
    assert names("apil") == ["compute001", "compute002", "frontend001"]
    assert len(containers_of(local.docker, "apil")) == 3

    assert api("resize", "apil", '{"compute": 1}', "{}").returncode == 0
    assert api("resize", "apil", "{}", '{"compute": 1}').returncode == 0
    assert names("apil") == ["compute001", "compute002", "frontend001"]
    result = api("remove-node", "apil", "compute002")
    assert result.returncode == 0, result.stderr
    assert names("apil") == ["compute001", "frontend001"]
    assert len(containers_of(local.docker, "apil")) == 2
    assert api("pause", "apil").returncode == 0
    assert {c.status for c in containers_of(local.docker, "apil")} == {"exited"}
    result = api("resume", "apil")
    assert result.returncode == 0, result.stderr
    assert {c.status for c in containers_of(local.docker, "apil")} == {"running"}
    assert api("stop", "apil").returncode == 0
    assert containers_of(local.docker, "apil") == [] and not (local.storage / "apil").exists()

    # killed while creating: stop --force leaves nothing
    proc = popen("start", "apik", "local-slurm", "1")
    wait_for_containers("apik", 1)
    proc.kill()
    proc.communicate()
    result = api("stop", "apik", "--force")
    assert result.returncode == 0, result.stderr
    assert containers_of(local.docker, "apik") == [] and not (local.storage / "apik").exists()
