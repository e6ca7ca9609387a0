"""Fixtures for tests on real nodes of the local cloud (systemd containers on Docker)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def engine_problem() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except ImportError:
        return "the docker Python package is not installed (pip install '.[local]')"
    except Exception as err:
        return f"no Docker engine answers ({err}); .ci/run installs and starts one"
    return None


@pytest.fixture(scope="session")
def docker_engine():
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"local cloud tests need a Docker engine: {problem}")
        pytest.skip(problem)
    import docker

    return docker.from_env()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def local(docker_engine, home, tmp_path):
    """The real CLI with the bundled configuration (deployed on first run) and a fresh HOME."""
    storage = home / ".elasticcluster" / "storage"
    started: list[str] = []

    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "elasticcluster", *args]

    def run(*args: str, timeout: float = 900) -> Run:
        if args and args[0] == "start":
            name = args[args.index("-n") + 1] if "-n" in args else args[1]
            started.append(name)
        proc = subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(*args: str) -> subprocess.Popen:
        return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def nodes(cluster: str) -> list[dict]:
        result = run("list-nodes", cluster, "--json")
        assert result.returncode == 0, result.output
        return json.loads(result.stdout)["cluster"]["nodes"]

    def start(template: str, name: str, timeout: float = 1500) -> Run:
        """``start TEMPLATE -n NAME``, which must succeed; its duration goes to the test's output."""
        began = time.monotonic()
        result = run("start", template, "-n", name, timeout=timeout)
        assert result.returncode == 0, result.output
        print(f"start of {name}: {time.monotonic() - began:.0f}s")
        return result

    run.popen = popen
    run.started = started
    run.nodes = nodes
    run.start = start
    run.storage = storage
    run.docker = docker_engine
    yield run
    # never leave containers behind, whatever the test did
    for name in started:
        for container in containers_of(docker_engine, name):
            try:
                container.remove(force=True)
            except Exception:  # removed meanwhile
                pass
    for network in docker_engine.networks.list(filters={"label": "elasticcluster.managed=1"}):
        if network.attrs.get("Labels", {}).get("elasticcluster.cluster") in started:
            try:
                network.remove()
            except Exception:
                pass
    for image in docker_engine.images.list(filters={"label": "elasticcluster.managed=1"}):
        if (image.labels or {}).get("elasticcluster.cluster") in started:  # baked images
            try:
                docker_engine.images.remove(image.id, force=True)
            except Exception:
                pass


def containers_of(docker_engine, cluster: str) -> list:
    import docker.errors

    # docker-py inspects each container it lists: one removed in between (by the command under
    # test, or the other test worker) raises NotFound; then list again
    for _ in range(20):
        try:
            return docker_engine.containers.list(all=True, filters={"label": f"elasticcluster.cluster={cluster}"})
        except docker.errors.NotFound:
            time.sleep(0.1)
    return docker_engine.containers.list(all=True, filters={"label": f"elasticcluster.cluster={cluster}"})


def ssh_banner(ip: str, timeout: float = 20) -> str:
    """The SSH banner of ``ip``:22 (a container of ours), waiting for sshd to come up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, 22), timeout=2) as sock:
                return sock.recv(64).decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def exec_in(container, command: str) -> tuple[int, str]:
    result = container.exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode(errors="replace").strip()


#: the cloud and login sections of the bundled local templates, for tests that write a config
LOCAL_CLOUD_AND_LOGIN = """\
[cloud/local]
provider = local

[login/local]
image_user = debian
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-local
user_key_private = ~/.elasticcluster/keys/local_ed25519
user_key_public = ~/.elasticcluster/keys/local_ed25519.pub
"""


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ``elasticcluster -v setup`` output: host -> counters."""
    import re

    hosts = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output.split("PLAY RECAP")[-1], re.M):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return hosts


def assert_setup_changes_nothing(local, name: str, nodes: list[str] | None = None,
                                 timeout: float = 1200) -> None:
    """``elasticcluster setup NAME`` again finds every node as the last whole setup left it
    and does not run the playbook; ``elasticcluster -v setup --full NAME`` runs it: it
    succeeds, reaches every node, changes nothing.

    ``nodes``: the node names expected (default: those ``list-nodes`` gives).
    """
    result = local("setup", name, timeout=timeout)
    assert result.returncode == 0, result.output
    assert "Nothing the setup manages changed since the last whole setup" in result.stdout + result.stderr, \
        result.output
    assert "setup: " not in result.stderr, result.stderr  # no play ran
    result = local("-v", "setup", "--full", name, timeout=timeout)
    assert result.returncode == 0, result.output
    counters = play_recap(result.stdout)
    nodes = sorted(nodes or (n["name"] for n in local.nodes(name)))
    assert sorted(counters) == nodes, result.stdout[-2000:]
    assert {host: c["changed"] for host, c in counters.items()} == dict.fromkeys(nodes, 0), result.stdout[-4000:]


#: an MPI program for the scheduler tests (tests/local/data/mpi_hello.c)
MPI_HELLO = (Path(__file__).parent / "data" / "mpi_hello.c").read_text()


def add_settings(local, home: Path, name: str, text: str) -> Path:
    """Add ``~/.elasticcluster/config.d/NAME.conf``, read after the bundled configuration (written
    first, by the first command), whose sections it extends: ``[setup/slurm]`` then
    ``global_var_users = ...``."""
    if not (home / ".elasticcluster" / "config").exists():
        result = local("list-templates")
        assert result.returncode == 0, result.output
    path = home / ".elasticcluster" / "config.d" / f"{name}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def user_key(home: Path, user: str) -> Path:
    """A new SSH key pair for ``user`` (the private key's path; ``.pub`` beside it)."""
    path = home / "keys" / user
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@outside", "-f", str(path)],
                   check=True)
    return path


def ssh_as(local, cluster: str, user: str, key: Path, command: str, node: str | None = None,
           stdin: str | None = None, timeout: float = 600) -> Run:
    """``ssh USER@NODE COMMAND`` from this machine with the user's own key, as a user of the
    cluster logs in (node: the frontend), host keys checked against the cluster's known_hosts."""
    nodes = {n["name"]: n for n in local.nodes(cluster)}
    node = node or next(n for n, info in nodes.items() if info["kind"] == "frontend")
    proc = subprocess.run(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={local.storage / cluster / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
         "-o", "ConnectTimeout=20", f"{user}@{nodes[node]['preferred_ip']}", command],
        input=stdin, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def mpi_ranks(output: str) -> list[tuple[int, int, str, int]]:
    """The (rank, size, host, sum) lines the MPI hello program printed."""
    import re

    return sorted((int(r), int(s), h, int(t)) for r, s, h, t in
                  re.findall(r"^rank (\d+) of (\d+) on (\S+) sum (\d+)$", output, re.M))
