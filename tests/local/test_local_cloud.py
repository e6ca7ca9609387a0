"""The local cloud: real nodes (systemd containers) through the same lifecycle as any cloud.

The bundled playbooks are tested in test_playbook_*.py; here --no-setup keeps to the lifecycle.

These start real containers on this machine's Docker engine; .ci/run starts one.
"""
from __future__ import annotations

import random
import time

import pytest

from tests.local.conftest import containers_of, exec_in, ssh_banner

pytestmark = pytest.mark.slow


def test_local_cluster_lifecycle(local):
    result = local("start", "local-slurm", "-n", "lc1", "--no-setup")
    assert result.returncode == 0, result.output
    assert "Frontend node:     frontend001" in result.stdout
    # the bundled login's key pair was made on first use
    keys = local.storage.parent / "keys"
    assert (keys / "local_ed25519").stat().st_mode & 0o777 == 0o600
    assert (keys / "local_ed25519.pub").read_text().startswith("ssh-ed25519 ")

    nodes = local.nodes("lc1")
    assert sorted(n["name"] for n in nodes) == ["compute001", "compute002", "frontend001"]
    ips = [n["preferred_ip"] for n in nodes]
    assert len(set(ips)) == 3 and all(ips)
    containers = containers_of(local.docker, "lc1")
    assert len(containers) == 3
    host_keys = set()
    for container in containers:
        assert exec_in(container, "cat /proc/1/comm") == (0, "systemd")
        code, out = exec_in(container, "systemctl is-system-running --wait")
        assert out in ("running", "degraded"), out
        host_keys.add(exec_in(container, "cat /etc/ssh/ssh_host_ed25519_key.pub")[1].split()[1])
        networks = container.attrs["NetworkSettings"]["Networks"]
        assert list(networks) == ["elasticcluster-lc1"]
    assert len(host_keys) == 3, "every node must have its own SSH host key"
    for ip in ips:
        assert ssh_banner(ip).startswith("SSH-2.0-OpenSSH")
    # node names resolve between nodes
    frontend = next(c for c in containers if c.labels["elasticcluster.node"] == "frontend001")
    code, out = exec_in(frontend, "getent hosts compute002")
    assert code == 0 and out.split()[0] == next(n["preferred_ip"] for n in nodes if n["name"] == "compute002")

    result = local("list-nodes", "lc1", "-u")
    assert result.returncode == 0 and "compute002" in result.stdout

    assert local("resize", "lc1", "-a", "1:compute", "--yes", "--no-setup").returncode == 0
    assert len(containers_of(local.docker, "lc1")) == 4
    assert "compute003" in [n["name"] for n in local.nodes("lc1")]
    assert local("resize", "lc1", "-r", "1:compute", "--yes", "--no-setup").returncode == 0
    assert len(containers_of(local.docker, "lc1")) == 3

    addresses = {n["name"]: n["preferred_ip"] for n in local.nodes("lc1")}
    assert local("pause", "lc1", "--yes").returncode == 0
    assert {c.status for c in containers_of(local.docker, "lc1")} == {"exited"}
    result = local("resume", "lc1")
    assert result.returncode == 0, result.output
    assert {c.status for c in containers_of(local.docker, "lc1")} == {"running"}
    # every node keeps its address (as a cloud's private address survives a stop), so the
    # nodes' /etc/hosts and the services that use it still hold after a resume
    assert {n["name"]: n["preferred_ip"] for n in local.nodes("lc1")} == addresses
    for node in local.nodes("lc1"):
        assert ssh_banner(node["preferred_ip"]).startswith("SSH-2.0-")

    assert local("stop", "lc1", "--yes").returncode == 0
    assert containers_of(local.docker, "lc1") == []
    assert local.docker.networks.list(names=["elasticcluster-lc1"]) == []
    assert not (local.storage / "lc1").exists()


def test_two_clusters_do_not_see_each_other(local):
    assert local("start", "local-slurm", "-n", "iso-a", "--nodes", "1:frontend,1:compute", "--no-setup").returncode == 0
    assert local("start", "local-slurm", "-n", "iso-b", "--nodes", "1:frontend,1:compute", "--no-setup").returncode == 0
    names_a = {n["instance_id"] for n in local.nodes("iso-a")}
    names_b = {n["instance_id"] for n in local.nodes("iso-b")}
    assert names_a.isdisjoint(names_b)
    b_ip = local.nodes("iso-b")[0]["preferred_ip"]
    a_frontend = containers_of(local.docker, "iso-a")[0]
    code, _ = exec_in(a_frontend, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{b_ip}/22'")
    assert code != 0, "a node of one cluster reached a node of another"
    assert exec_in(a_frontend, "getent hosts compute001")[1].split()[0] != local.nodes("iso-b")[0]["preferred_ip"]
    assert local("stop", "iso-a", "--yes").returncode == 0
    assert len(containers_of(local.docker, "iso-b")) == 2
    assert local("stop", "iso-b", "--yes").returncode == 0


def test_sigkill_during_start_then_stop_force_leaves_no_container(local):
    rng = random.Random(4)
    for number in range(3):
        name = f"kill{number}"
        proc = local.popen("start", "local-slurm", "-n", name, "--nodes", "1:frontend,4:compute", "--no-setup")
        time.sleep(0.4 + rng.uniform(0, 1.2))
        proc.kill()
        proc.communicate()
        if (local.storage / name / "state.json").exists():
            result = local("stop", name, "--force", "--yes")
            assert result.returncode == 0, result.output
        assert containers_of(local.docker, name) == [], f"{name}: containers left after stop --force"


def test_missing_engine_is_one_clear_message(local, write_config):
    config = write_config("""\
[cloud/local]
provider = local
docker_host = unix:///nonexistent/docker.sock
[login/local]
image_user = debian
user_key_name = k
user_key_private = ~/.elasticcluster/keys/local_ed25519
user_key_public = ~/.elasticcluster/keys/local_ed25519.pub
[setup/s]
frontend_groups = slurm_master
[cluster/x]
cloud = local
login = local
setup_provider = s
image_id = elasticcluster/debian-node:bookworm
flavor = small
frontend_nodes = 1
""")
    result = local("-c", str(config), "start", "x")
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr and "apt-get install -y docker.io" in result.stderr
    assert "Traceback" not in result.output
    assert local("-c", str(config), "list").stdout.strip() == "No clusters found."


def test_nodes_share_downloaded_packages_without_sharing_apt_locks(local, home, tmp_path):
    # a package cache of this test's own: the default one (/var/cache/elasticcluster/apt) is the
    # machine's, and where an earlier run left `hello` in it no node downloads anything here
    cache = tmp_path / "apt-cache"
    assert local("list-templates").returncode == 0  # deploys the bundled config
    config = home / ".elasticcluster" / "config"
    text = config.read_text()
    assert "[cloud/local]\nprovider = local\n" in text
    config.write_text(text.replace("[cloud/local]\nprovider = local\n",
                                   f"[cloud/local]\nprovider = local\napt_cache = {cache}\n", 1))
    assert local("start", "local-slurm", "-n", "aptc", "--nodes", "1:frontend,1:compute",
                 "--no-setup").returncode == 0
    assert cache.is_dir() and list(cache.iterdir()) == []
    first, second = sorted(containers_of(local.docker, "aptc"), key=lambda c: c.name)
    archives = "/var/cache/apt/archives"

    # both nodes install at the same time: no "Could not get lock /var/cache/apt/archives/lock"
    # (the shared folder is empty when they update: each may download a copy of its own, which stays
    # a file of its own; so the sharing is checked below on a package that one node alone downloads)
    install = "apt-get update -qq && apt-get install -y --no-install-recommends tree"
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: exec_in(c, install), (first, second)))
    for code, output in results:
        assert code == 0, output[-500:]
    # published once, under its own name (no temporary file left behind)
    published = sorted(p.name for p in cache.iterdir())
    assert len([name for name in published if name.startswith("tree_")]) == 1, published
    assert all(name.endswith(".deb") and not name.startswith(".") for name in published), published

    # a package one node downloads ...
    code, output = exec_in(first, "apt-get install -y --no-install-recommends hello")
    assert code == 0 and "Get:1 " in output and "Need to get 0 B" not in output, output[-500:]
    (deb,) = [p.name for p in cache.glob("hello_*.deb")]
    # ... the other uses without a second download: after its `apt-get update` it is a link to the
    # shared copy, which apt takes as downloaded
    code, target = exec_in(second, f"apt-get update -qq && readlink {archives}/{deb}")
    assert (code, target) == (0, f"/var/cache/elasticcluster/apt/{deb}")
    code, output = exec_in(second, "apt-get install -y --no-install-recommends hello")
    assert code == 0 and "Need to get 0 B" in output and "Get:" not in output, output[-500:]
    assert exec_in(second, "hello")[1] == "Hello, world!"
    assert exec_in(second, f"readlink {archives}/{deb}")[1] == f"/var/cache/elasticcluster/apt/{deb}"
    assert local("stop", "aptc", "--yes").returncode == 0
