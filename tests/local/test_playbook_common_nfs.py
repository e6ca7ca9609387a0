"""The common and NFS roles on real nodes of the local cloud.

The local cloud shares one host folder as /home in every node of a cluster,
so its templates set ``nfs_home = no``; that sharing is checked here. The NFS
roles themselves run up to what this machine's kernel allows: containers use
the host's kernel, and NFS needs its nfsd (server) and nfs (client) modules.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.local.conftest import LOCAL_CLOUD_AND_LOGIN, assert_setup_changes_nothing, containers_of

pytestmark = pytest.mark.slow


def config_text(nfs_home: bool) -> str:
    return f"""\
{LOCAL_CLOUD_AND_LOGIN}
[setup/nfs]
provider = ansible
server_groups = nfs_server
client_groups = nfs_client

[cluster/nfs]
cloud = local
login = local
setup_provider = nfs
image_id = elasticcluster/debian-node:bookworm
flavor = small
server_nodes = 1
client_nodes = 2
ssh_to = server
global_var_nfs_home = {'yes' if nfs_home else 'no'}
"""


def kernel_lacks() -> list[str]:
    """What this machine's kernel (the nodes' kernel) lacks for NFS."""
    filesystems = Path("/proc/filesystems").read_text().split()
    return [f"{module} ({what})" for module, what in (("nfsd", "NFS server"), ("nfs", "NFS client"))
            if module not in filesystems]


def write_config(home: Path, nfs_home: bool) -> None:
    config = home / ".elasticcluster" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config_text(nfs_home))
    config.chmod(0o600)


def test_common_role_and_shared_home(local, home):
    write_config(home, nfs_home=False)
    name = "slurm-common1"
    local.start("nfs", name, timeout=900)
    try:
        nodes = ["client001", "client002", "server001"]
        ips = {n["name"]: n["preferred_ip"] for n in local.nodes(name)}
        for node in nodes:
            result = local("ssh", name, "-n", node, "--",
                           "hostname; sed -n '/# BEGIN elasticcluster/,/# END/p' /etc/hosts")
            assert result.returncode == 0, result.output
            lines = result.stdout.splitlines()
            assert lines[0] == node
            assert sorted(lines[2:-1]) == sorted(f"{ips[n]} {n}" for n in nodes)
        # the admin user goes from any node to any other, host keys checked
        result = local("ssh", name, "-n", "client002", "--",
                       "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes server001 "
                       "'hostname; ssh -o BatchMode=yes -o StrictHostKeyChecking=yes client001 hostname'")
        assert result.returncode == 0, result.output
        assert result.stdout.split() == ["server001", "client001"]
        # /home is shared: written on a client, read on the server
        result = local("ssh", name, "-n", "client001", "--", "echo from-client001 > ~/shared.txt")
        assert result.returncode == 0, result.output
        assert local("ssh", name, "--", "cat ~/shared.txt").stdout.strip() == "from-client001"
        # nfs_home = no: the NFS roles did nothing
        assert local("ssh", name, "--", "dpkg -s nfs-kernel-server").returncode == 1
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name, nodes)
    finally:
        assert local("stop", name, "--yes").returncode == 0
    assert containers_of(local.docker, name) == []


def test_nfs_roles(local, home):
    write_config(home, nfs_home=True)
    name = "slurm-nfs1"
    lacks = kernel_lacks()
    result = local("start", "nfs", "-n", name)
    try:
        if lacks:
            # the roles stop, saying why, where the kernel has no NFS
            assert result.returncode == 1, result.output
            assert "server001: task 'nfs_server : Stop where the kernel cannot serve NFS' failed" \
                in result.stderr, result.stderr
            assert "no NFS server support" in result.stderr
        else:
            assert result.returncode == 0, result.output
        # up to there: the server's package and exports file
        assert local("ssh", name, "--", "dpkg -s nfs-kernel-server >/dev/null").returncode == 0
        exports = local("ssh", name, "--", "cat /etc/exports").stdout
        ips = {n["name"]: n["preferred_ip"] for n in local.nodes(name)}
        line = next(line for line in exports.splitlines() if line.startswith("/home "))
        assert sorted(re.findall(r"(\S+)\(rw,", line)) == sorted([ips["client001"], ips["client002"]])
        if lacks:
            # a play whose every host failed ends ansible-playbook: run the clients' play alone
            result = local("setup", name, "--", "--limit", "client001,client002")
            assert result.returncode == 1, result.output
            for client in ("client001", "client002"):
                assert f"{client}: task 'nfs_client : Stop where the kernel cannot mount NFS' failed" \
                    in result.stderr, result.stderr
            assert "no NFS client support" in result.stderr
        # the clients' package
        assert local("ssh", name, "-n", "client001", "--", "dpkg -s nfs-common >/dev/null").returncode == 0
        if lacks:
            assert "nfs" not in local("ssh", name, "-n", "client001", "--", "cat /etc/fstab").stdout
            pytest.skip(f"NFS cannot work on this machine: its kernel lacks {', '.join(lacks)} (the local "
                        f"nodes share it); the roles were tested up to that point (packages, /etc/exports, "
                        f"kernel check)")
        result = local("ssh", name, "-n", "client001", "--", "findmnt -t nfs,nfs4 /home")
        assert result.returncode == 0, result.output
        assert local("ssh", name, "-n", "client001", "--", "echo via-nfs > ~/nfs.txt").returncode == 0
        assert local("ssh", name, "--", "cat ~/nfs.txt").stdout.strip() == "via-nfs"
    finally:
        assert local("stop", name, "--yes").returncode == 0
    assert containers_of(local.docker, name) == []
