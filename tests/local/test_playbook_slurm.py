"""The bundled SLURM playbook (with the common role) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes: SLURM runs
jobs on every compute node, the common role's /etc/hosts, hostnames and SSH
between nodes, a second setup changes nothing, a node added by resize joins
SLURM, and a node taken away by remove-node leaves it.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.local.conftest import assert_setup_changes_nothing, containers_of

pytestmark = pytest.mark.slow


def sinfo_nodes(local, name: str) -> dict[str, str]:
    result = local("ssh", name, "--", "sinfo --noheader --Node --format '%N %t'")
    assert result.returncode == 0, result.output
    return dict(line.split() for line in result.stdout.splitlines() if line.strip())


def test_slurm_cluster_runs_jobs_grows_and_shrinks(local):
    name = "slurm-e2e1"
    started = local.start("local-slurm", name)
    try:
        # the setup shows only the plays that have hosts in this cluster (site.yml has a play
        # for every service)
        plays = [line[len("setup: "):] for line in started.stderr.splitlines() if line.startswith("setup: ")]
        assert sorted(set(plays)) == ["Common setup of every node", "SLURM"], started.stderr
        # list and list-nodes after a start with setup: this cluster, and nothing else
        listed = local("list", "--json")
        assert listed.returncode == 0 and "ERROR" not in listed.stderr, listed.output
        assert [c["name"] for c in json.loads(listed.stdout)["clusters"]] == [name]
        assert json.loads(listed.stdout)["unreadable"] == []
        result = local("list-nodes", name)
        assert result.returncode == 0 and "ERROR" not in result.stderr, result.output
        computes = ["compute001", "compute002"]
        nodes = ["frontend001", *computes]
        # SLURM: every compute node idle, and a job on all of them
        assert sinfo_nodes(local, name) == {node: "idle" for node in computes}
        result = local("ssh", name, "--", f"srun -N{len(computes)} hostname")
        assert result.returncode == 0, result.output
        assert sorted(result.stdout.split()) == computes
        # slurm.conf: the flavor's CPUs and memory (less a margin), one partition
        result = local("ssh", name, "--", "scontrol show node compute001")
        assert "CPUTot=1 " in result.stdout and re.search(r"RealMemory=9\d\d\b", result.stdout), result.stdout
        # common: /etc/hosts lists every node, hostnames are node names
        for node in nodes:
            result = local("ssh", name, "-n", node, "--", "hostname; getent hosts " + " ".join(nodes))
            assert result.returncode == 0, result.output
            lines = result.stdout.splitlines()
            assert lines[0] == node
            assert {line.split()[-1] for line in lines[1:]} == set(nodes)
        hosts = local("ssh", name, "--", "cat /etc/hosts").stdout
        block = hosts.split("# BEGIN elasticcluster", 1)[1].split("# END", 1)[0]
        listed = {ip: host for ip, host in re.findall(r"^(\d+\.\d+\.\d+\.\d+) (\S+)$", block, re.M)}
        ips = {n["name"]: n["preferred_ip"] for n in local.nodes(name)}
        assert listed == {ip: node for node, ip in ips.items()}
        # the admin (login) user can ssh between nodes, host keys checked
        result = local("ssh", name, "--", "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes compute001 "
                       "'whoami; hostname; ssh -o BatchMode=yes compute002 hostname'")
        assert result.returncode == 0, result.output
        assert result.stdout.split() == ["debian", "compute001", "compute002"]
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name, nodes)
        # a new compute node joins SLURM
        result = local("resize", name, "-a", "1:compute", timeout=1500)
        assert result.returncode == 0, result.output
        computes.append("compute003")
        assert sinfo_nodes(local, name) == {node: "idle" for node in computes}
        result = local("ssh", name, "--", f"srun -N{len(computes)} hostname")
        assert result.returncode == 0, result.output
        assert sorted(result.stdout.split()) == computes
        result = local("ssh", name, "--", "ssh -o BatchMode=yes compute003 hostname")
        assert result.stdout.strip() == "compute003", result.output
        # a removed node leaves SLURM and /etc/hosts (remove-node sets the others up again)
        result = local("remove-node", name, "compute002", "--yes", timeout=1500)
        assert result.returncode == 0, result.output
        computes.remove("compute002")
        assert sinfo_nodes(local, name) == {node: "idle" for node in computes}
        result = local("ssh", name, "--", f"srun -N{len(computes)} hostname")
        assert result.returncode == 0, result.output
        assert sorted(result.stdout.split()) == computes
        result = local("ssh", name, "-n", "compute001", "--", "cat /etc/hosts")
        assert "compute003" in result.stdout and "compute002" not in result.stdout, result.output
    finally:
        assert local("stop", name, "--yes").returncode == 0
    assert containers_of(local.docker, name) == []
