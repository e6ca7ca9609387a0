"""SSH and setup on real nodes of the local cloud: the wait, host keys, jump host, ssh/sftp, Ansible."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import LOCAL_CLOUD_AND_LOGIN, containers_of, exec_in

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parent / "data"


def config_text(extra_cluster: str = "", extra_setup: str = "") -> str:
    return f"""\
{LOCAL_CLOUD_AND_LOGIN}
[setup/small]
provider = ansible
playbook_path = {DATA / 'small.yml'}
frontend_groups = slurm_master,common
compute_groups = slurm_clients,common
compute_var_color = blue
global_var_site_name = testsite
{extra_setup}

[cluster/small]
cloud = local
login = local
setup_provider = small
image_id = elasticcluster/debian-node:bookworm
flavor = small
frontend_nodes = 1
compute_nodes = 2
ssh_to = frontend
startup_timeout = 60
{extra_cluster}
"""


@pytest.fixture
def cluster(local, home):
    """A started 1+2 cluster named after the test, set up with the small playbook."""
    config = home / ".elasticcluster" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config_text())
    config.chmod(0o600)

    def start(name: str, *args: str):
        result = local("start", "small", "-n", name, *args)
        assert result.returncode == 0, result.output
        return name

    start.config = config
    return start


def storage_state(local, name: str) -> dict:
    return json.loads((local.storage / name / "state.json").read_text())


def test_start_runs_setup_and_ssh_reaches_every_node(local, cluster):
    name = cluster("ssh1")
    for node, kind, groups, color in (("frontend001", "frontend", "common,slurm_master", "none"),
                                      ("compute002", "compute", "common,slurm_clients", "blue")):
        result = local("ssh", name, "-n", node, "--", "cat", "/tmp/elasticcluster-node-info")
        assert result.returncode == 0, result.output
        info = dict(line.split("=", 1) for line in result.stdout.split())
        assert info == {"name": node, "kind": kind, "user": "debian", "groups": groups,
                        "color": color, "site": "testsite"}
    # ssh passes the command's output and exit status through
    result = local("ssh", name, "--", "hostname; exit 3")
    assert result.returncode == 3 and result.stdout.strip() == "frontend001"
    # the master-only play ran on the master only
    assert local("ssh", name, "--", "cat /tmp/elasticcluster-master").stdout.strip() == f"master of {name}"
    assert local("ssh", name, "-n", "compute001", "--", "test -e /tmp/elasticcluster-master").returncode == 1
    # a second setup changes nothing and passes ansible-playbook arguments through
    result = local("-v", "setup", name, "--", "--tags", "master")
    assert result.returncode == 0, result.output
    assert "Write what Ansible knows" not in result.output and "changed=0" in result.output
    known_hosts = local.storage / name / "known_hosts"
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    assert len(known_hosts.read_text().splitlines()) == 3
    inventory = local.storage / name / "inventory.json"
    assert inventory.stat().st_mode & 0o777 == 0o600
    # everything in storage is the user's alone, Ansible's fact cache included (it was 0644)
    facts = list((local.storage / name / "facts").iterdir())
    assert facts, "the setup gathered facts"
    for path in [local.storage / name, *(local.storage / name).rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert local("stop", name, "--yes").returncode == 0
    assert not known_hosts.exists() and not inventory.exists()


def test_sftp_put_and_get(local, cluster, tmp_path):
    name = cluster("sftp1", "--nodes", "1:frontend,0:compute")
    upload = tmp_path / "up.txt"
    upload.write_text("hello from the host\n")
    batch = tmp_path / "batch"
    batch.write_text(f"put {upload} /tmp/up.txt\nget /etc/hostname {tmp_path / 'down.txt'}\n")
    result = local("sftp", name, "--", "-b", str(batch))
    assert result.returncode == 0, result.output
    assert (tmp_path / "down.txt").read_text().strip() == "frontend001"
    assert local("ssh", name, "--", "cat /tmp/up.txt").stdout == "hello from the host\n"


def test_inventory_parses_with_ansible_inventory(local, cluster):
    name = cluster("inv1", "--no-setup")
    # --no-setup still waits for SSH; the inventory is written by setup
    assert local("setup", name).returncode == 0
    inventory = local.storage / name / "inventory.json"
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    listed = json.loads(subprocess.run([str(ansible_inventory), "--list", "-i", str(inventory)],
                                       capture_output=True, text=True, check=True).stdout)
    assert sorted(listed["slurm_master"]["hosts"]) == ["frontend001"]
    assert sorted(listed["slurm_clients"]["hosts"]) == ["compute001", "compute002"]
    assert sorted(listed["common"]["hosts"]) == ["compute001", "compute002", "frontend001"]
    hostvars = listed["_meta"]["hostvars"]
    nodes = {n["name"]: n for n in local.nodes(name)}
    for host, variables in hostvars.items():
        assert variables["ansible_host"] == nodes[host]["preferred_ip"]
        assert variables["ansible_user"] == "debian"
        assert variables["ansible_become"] is True and variables["ansible_become_user"] == "root"
        assert variables["site_name"] == "testsite"
        assert variables["ansible_ssh_private_key_file"].endswith("local_ed25519")
        assert f"UserKnownHostsFile={local.storage / name / 'known_hosts'}" in \
            variables["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=yes" in variables["ansible_ssh_common_args"]
        assert variables.get("color") == ("blue" if host.startswith("compute") else None)


def test_changed_host_key_is_refused(local, cluster):
    name = cluster("hk1", "--no-setup")
    victim = next(c for c in containers_of(local.docker, name) if c.labels["elasticcluster.node"] == "compute001")
    exec_in(victim, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh")
    result = local("ssh", name, "-n", "compute001", "--", "true")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr or "IDENTIFICATION HAS CHANGED" in result.stderr
    # Fabric refuses too
    from elasticcluster import ssh
    from elasticcluster.repository import DiskRepository

    stored = DiskRepository(local.storage).get(name)
    results = ssh.wait_for_ssh(stored, [stored.get_node_by_name("compute001")], probe_timeout=3, timeout=5)
    assert results["compute001"].status == ssh.KEY_CHANGED
    # and so does Ansible: setup fails naming the node
    result = local("setup", name)
    assert result.returncode == 1
    assert "compute001: unreachable" in result.stderr
    assert "Traceback" not in result.output
    # the other nodes still work
    assert local("ssh", name, "-n", "compute002", "--", "true").returncode == 0


def test_nodes_with_only_private_addresses_go_through_the_frontend(local, cluster):
    name = cluster("jump1", "--no-setup")
    path = local.storage / name / "state.json"
    data = json.loads(path.read_text())
    frontend_ip = data["cluster"]["nodes"]["frontend"][0]["public_ips"][0]
    for node in data["cluster"]["nodes"]["compute"]:
        node["public_ips"] = []  # as on a cloud where only the frontend has a public address
        node["preferred_ip"] = None
    path.write_text(json.dumps(data))
    result = local("ssh", name, "-n", "compute001", "--", "echo $SSH_CONNECTION")
    assert result.returncode == 0, result.output
    assert result.stdout.split()[0] == frontend_ip, "the connection did not come through the frontend"
    from elasticcluster import ssh
    from elasticcluster.repository import DiskRepository

    stored = DiskRepository(local.storage).get(name)
    results = ssh.wait_for_ssh(stored, stored.get_all_nodes(), probe_timeout=5, timeout=30)
    assert {r.status for r in results.values()} == {ssh.READY}
    result = local("setup", name)
    assert result.returncode == 0, result.output
    result = local("ssh", name, "-n", "compute002", "--", "cat /tmp/elasticcluster-node-info")
    assert "name=compute002" in result.stdout


def test_setup_failure_names_host_task_and_message(local, cluster, home):
    cluster.config.write_text(config_text(extra_setup="compute_var_fail_here = yes"))
    result = local("start", "small", "-n", "fail1", "--nodes", "1:frontend,1:compute")
    assert result.returncode == 1
    assert "compute001: task 'Fail on request' failed: failing on purpose on compute001" in result.stderr
    assert "frontend001" not in result.stderr.split("failed:\n", 1)[-1].split("Fix it")[0]
    assert "Traceback" not in result.output
    assert (local.storage / "fail1" / "state.json").exists()  # the nodes are kept; stop cleans them
    assert local("stop", "fail1", "--yes").returncode == 0
    assert containers_of(local.docker, "fail1") == []


def _wait_one(local, name: str, node: str, timeout: float = 6):
    from elasticcluster import ssh
    from elasticcluster.repository import DiskRepository

    stored = DiskRepository(local.storage).get(name)
    return ssh.wait_for_ssh(stored, [stored.get_node_by_name(node)], probe_timeout=2, timeout=timeout)[node]


def test_wait_tells_failure_modes_apart(local, cluster):
    from elasticcluster import ssh

    name = cluster("modes1", "--no-setup", "--nodes", "1:frontend,4:compute")
    containers = {c.labels["elasticcluster.node"]: c for c in containers_of(local.docker, name)}
    exec_in(containers["compute001"], "systemctl stop ssh.service ssh.socket")
    exec_in(containers["compute002"], "systemctl stop ssh.service; "
            "nohup python3 -c 'import socket,time; s=socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"\", 22)); s.listen(); "
            "c=[s.accept() for _ in range(100)]' >/dev/null 2>&1 &")
    exec_in(containers["compute003"], "rm /home/debian/.ssh/authorized_keys")
    network = local.docker.networks.get(f"elasticcluster-{name}")
    network.disconnect(containers["compute004"])  # its address now answers nothing
    try:
        assert _wait_one(local, name, "compute001").status == ssh.PORT_CLOSED
        assert _wait_one(local, name, "compute002").status == ssh.NO_BANNER
        assert _wait_one(local, name, "compute003").status == ssh.AUTH_REFUSED
        assert _wait_one(local, name, "compute004").status == ssh.UNREACHABLE
    finally:
        network.connect(containers["compute004"])
    # and the CLI reports them by node, with what each showed
    result = local("setup", name)
    assert result.returncode == 1
    for node in ("compute001", "compute002", "compute003"):
        assert f"{node}: unreachable" in result.stderr
    assert "Traceback" not in result.output


def test_nodes_that_never_accept_ssh(local, cluster):
    no_ssh = 'image_userdata = """#!/bin/sh\nsystemctl mask ssh.service ssh.socket\n"""'
    cluster.config.write_text(config_text(extra_cluster=f"startup_timeout = 15\n[cluster/small/compute]\n{no_ssh}\n"))
    result = local("start", "small", "-n", "nossh1", "--nodes", "1:frontend,1:compute")
    assert result.returncode == 1
    assert "compute001 (" in result.stderr and "port closed" in result.stderr
    assert "Traceback" not in result.output
    assert local("stop", "nossh1", "--yes").returncode == 0
    assert containers_of(local.docker, "nossh1") == []
    # with compute_min_nodes = 0 the start carries on without them, and terminates them
    cluster.config.write_text(config_text(
        extra_cluster=f"startup_timeout = 15\ncompute_min_nodes = 0\n[cluster/small/compute]\n{no_ssh}\n"))
    result = local("start", "small", "-n", "nossh2", "--nodes", "1:frontend,1:compute")
    assert result.returncode == 0, result.output
    assert "never accepted SSH" in result.stderr
    assert [n["name"] for n in local.nodes("nossh2")] == ["frontend001"]
    assert len(containers_of(local.docker, "nossh2")) == 1


def test_ssh_proxy_command_is_used_everywhere(local, cluster, tmp_path):
    mark = tmp_path / "proxy-used"
    proxy = f"{sys.executable} {DATA / 'tcp_proxy.py'} %h %p {mark}"
    text = config_text().replace("[setup/small]", f"ssh_proxy_command = {proxy}\n\n[setup/small]")
    cluster.config.write_text(text)
    name = cluster("proxy1", "--nodes", "1:frontend,1:compute")  # SSH wait (Fabric) and setup (Ansible)
    used = mark.read_text().split()
    ips = {n["preferred_ip"] for n in local.nodes(name)}
    assert {u.rsplit(":", 1)[0] for u in used} == ips
    before = len(used)
    result = local("ssh", name, "-n", "compute001", "--", "hostname")  # and the ssh command
    assert result.returncode == 0 and result.stdout.strip() == "compute001"
    assert len(mark.read_text().split()) == before + 1
