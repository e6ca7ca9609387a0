"""The bundled SLURM playbook (with the common and users roles) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes. As a research
group uses it: a configured user (not the admin) logs in with her own key,
compiles an MPI program with ``mpicc`` and runs it with plain ``srun -N2 -n4``
and with ``sbatch``, ranks on both compute nodes; a job that can never fit is
refused at once; ``sacct`` lists her jobs, also after the cluster was paused
and resumed. A compute node whose slurmd started before the PMIx library
existed fails MPI steps until a second ``setup`` repairs it; a user taken off
the list is locked there too. Then a second setup finds every node as it was and does
not run the playbook (``--full`` runs it and changes nothing), a daemon stopped by hand
on one node makes the next setup run the playbook, which starts it again, a node
added by resize joins SLURM, and a node taken away by remove-node leaves it.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.local.conftest import (
    MPI_HELLO,
    add_settings,
    assert_setup_changes_nothing,
    containers_of,
    mpi_ranks,
    ssh_as,
    user_key,
)

pytestmark = pytest.mark.slow

NAME = "slurm-hpc1"
#: where Debian's SLURM loads the PMIx library from (libpmix-dev's link)
PMIX_LINK = "/usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so"


def sinfo_nodes(local, name: str) -> dict[str, str]:
    result = local("ssh", name, "--", "sinfo --noheader --Node --format '%N %t'")
    assert result.returncode == 0, result.output
    return dict(line.split() for line in result.stdout.splitlines() if line.strip())


def wait_idle(local, name: str, nodes: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sinfo_nodes(local, name) != dict.fromkeys(nodes, "idle"):
        assert time.monotonic() < deadline, sinfo_nodes(local, name)
        time.sleep(2)


def users_of(local, name: str, node: str, users: list[str]) -> dict[str, tuple[int, int]]:
    result = local("ssh", name, "-n", node, "--", "getent passwd " + " ".join(users))
    return {f[0]: (int(f[2]), int(f[3])) for f in (line.split(":") for line in result.stdout.splitlines())}


def check_accounts(local, home, key) -> dict[str, tuple[int, int]]:
    """alice (uid 3001, her own key) and bob (a uid chosen for him) on every node, homes on the
    shared /home, SSH between the nodes as each of them."""
    uids = users_of(local, NAME, "frontend001", ["alice", "bob"])
    assert uids["alice"] == (3001, 3001) and uids["bob"][0] == uids["bob"][1] >= 2001, uids
    for node in ("compute001", "compute002"):
        assert users_of(local, NAME, node, ["alice", "bob"]) == uids, node
    result = ssh_as(local, NAME, "alice", key, "whoami; stat -c '%U %a' ~; ssh -o BatchMode=yes compute001 "
                    "'whoami; hostname; ssh -o BatchMode=yes compute002 hostname'")
    assert result.returncode == 0, result.output
    assert result.stdout.split() == ["alice", "alice", "755", "alice", "compute001", "compute002"], result.output
    result = local("ssh", NAME, "--", "sudo -iu bob ssh -o BatchMode=yes compute002 'whoami; hostname'")
    assert result.stdout.split() == ["bob", "compute002"], result.output
    return uids


def check_mpi(local, key) -> list[int]:
    """alice compiles the MPI hello world on the frontend and runs it with srun and sbatch."""
    result = ssh_as(local, NAME, "alice", key, "cat > hello.c && mpicc -o hello hello.c && ls -l hello",
                    stdin=MPI_HELLO)
    assert result.returncode == 0, result.output
    # plain srun: MpiDefault=pmix, 2 tasks on each 2-CPU node
    result = ssh_as(local, NAME, "alice", key, "srun -N2 -n4 ./hello")
    assert result.returncode == 0, result.output
    ranks = mpi_ranks(result.stdout)
    assert [r[:2] for r in ranks] == [(i, 4) for i in range(4)] and {r[3] for r in ranks} == {6}, result.output
    assert sorted(r[2] for r in ranks) == ["compute001"] * 2 + ["compute002"] * 2, result.output
    # sbatch: a job script whose srun takes the job's 4 tasks on 2 nodes
    result = ssh_as(local, NAME, "alice", key,
                    "printf '#!/bin/bash\\n#SBATCH -N2 -n4\\nsrun ./hello\\n' > hello.sh && "
                    "sbatch --parsable --wait -o hello.out hello.sh && cat hello.out")
    assert result.returncode == 0, result.output
    batch_job = int(result.stdout.split()[0])
    ranks = mpi_ranks(result.stdout)
    assert len(ranks) == 4 and {r[2] for r in ranks} == {"compute001", "compute002"}, result.output
    # slurmctld sends job records to slurmdbd as it can: a busy machine sees them a little later
    deadline = time.monotonic() + 90
    while True:
        result = ssh_as(local, NAME, "alice", key, "sacct -X -n -P -o JobID,JobName,State")
        jobs = [line.split("|") for line in result.stdout.splitlines()]
        done = [j for j in jobs if j[1:] in (["hello", "COMPLETED"], ["hello.sh", "COMPLETED"])]
        if len(done) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(3)
    srun_job = next((int(j[0]) for j in jobs if j[1] == "hello"), None)
    assert srun_job is not None, (result.output, jobs)
    assert [str(batch_job), "hello.sh", "COMPLETED"] in jobs and [str(srun_job), "hello", "COMPLETED"] in jobs, jobs
    return [srun_job, batch_job]


def check_sizes_are_true(local) -> None:
    """The flavor's CPUs and memory; a job that can never fit is refused at once."""
    result = local("ssh", NAME, "--", "scontrol show node compute001")
    assert "CPUTot=2 " in result.stdout and re.search(r"RealMemory=19\d\d\b", result.stdout), result.stdout
    for job, message in (("srun -N2 -n5 true", "More processors requested than permitted"),
                         ("srun -N1 --mem=4G true", "Memory specification can not be satisfied")):
        began = time.monotonic()
        result = local("ssh", NAME, "--", f"timeout 60 {job}", timeout=120)
        assert result.returncode == 1 and message in result.stderr, result.output
        assert time.monotonic() - began < 30, f"{job} was not refused at once"


def break_pmix(local, node: str) -> None:
    """slurmd restarted while the PMIx library is away: as if it started before Open MPI came."""
    result = local("ssh", NAME, "-n", node, "--",
                   f"sudo mv {PMIX_LINK} /root/ && sudo systemctl restart slurmd && sleep 3 && "
                   f"sudo mv /root/libpmix.so {PMIX_LINK} && sudo grep -c libpmix /proc/$(pidof slurmd)/maps")
    assert result.stdout.strip() == "0", result.output


def test_slurm_cluster_for_a_research_group(local, home):
    key = user_key(home, "alice")
    add_settings(local, home, "users", f"[setup/slurm]\nglobal_var_users = alice:3001:{key}.pub, bob\n")
    started = local.start("local-slurm", NAME)
    try:
        # the setup shows only the plays that have hosts in this cluster (site.yml has a play
        # for every service)
        plays = [line[len("setup: "):] for line in started.stderr.splitlines() if line.startswith("setup: ")]
        assert sorted(set(plays)) == ["Cluster user accounts", "Common setup of every node", "SLURM"], \
            started.stderr
        # list and list-nodes after a start with setup: this cluster, and nothing else
        listed = local("list", "--json")
        assert listed.returncode == 0 and "ERROR" not in listed.stderr, listed.output
        assert [c["name"] for c in json.loads(listed.stdout)["clusters"]] == [NAME]
        assert json.loads(listed.stdout)["unreadable"] == []
        computes = ["compute001", "compute002"]
        nodes = ["frontend001", *computes]
        # SLURM: every compute node idle, and a job on all of them
        assert sinfo_nodes(local, NAME) == {node: "idle" for node in computes}
        result = local("ssh", NAME, "--", f"srun -N{len(computes)} hostname")
        assert result.returncode == 0, result.output
        assert sorted(result.stdout.split()) == computes
        check_sizes_are_true(local)
        # common: /etc/hosts lists every node, hostnames are node names
        for node in nodes:
            result = local("ssh", NAME, "-n", node, "--", "hostname; getent hosts " + " ".join(nodes))
            assert result.returncode == 0, result.output
            lines = result.stdout.splitlines()
            assert lines[0] == node
            assert {line.split()[-1] for line in lines[1:]} == set(nodes)
        hosts = local("ssh", NAME, "--", "cat /etc/hosts").stdout
        block = hosts.split("# BEGIN elasticcluster", 1)[1].split("# END", 1)[0]
        listed = {ip: host for ip, host in re.findall(r"^(\d+\.\d+\.\d+\.\d+) (\S+)$", block, re.M)}
        ips = {n["name"]: n["preferred_ip"] for n in local.nodes(NAME)}
        assert listed == {ip: node for node, ip in ips.items()}
        # the admin (login) user can ssh between nodes, host keys checked
        result = local("ssh", NAME, "--", "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes compute001 "
                       "'whoami; hostname; ssh -o BatchMode=yes compute002 hostname'")
        assert result.returncode == 0, result.output
        assert result.stdout.split() == ["debian", "compute001", "compute002"]
        # the cluster's users, and alice's MPI jobs, in the accounting database
        uids = check_accounts(local, home, key)
        jobs = check_mpi(local, key)
        result = local("ssh", NAME, "--", "sacctmgr -nP show associations format=account,user")
        assert {"users|alice", "users|bob", "users|debian"} <= set(result.stdout.split()), result.output
        # sreport answers from the database (its figures are rolled up by the hour: this
        # hour's jobs are not in them yet)
        result = local("ssh", NAME, "--", "sreport -P job sizesbyaccount start=2020-01-01 end=now printjobcount")
        assert result.returncode == 0 and "Job Sizes" in result.stdout, result.output

        # compute001's slurmd started before PMIx: an MPI step fails there (the PMIx plugin
        # did not load) ...
        break_pmix(local, "compute001")
        result = ssh_as(local, NAME, "alice", key, "timeout 90 srun -N2 -n4 ./hello")
        assert result.returncode != 0 and len(mpi_ranks(result.stdout)) < 4, result.output
        # ... until a second setup, which restarts that slurmd alone; bob, taken off the list
        # at the same time, is locked on every node (his home stays)
        add_settings(local, home, "users", f"[setup/slurm]\nglobal_var_users = alice:3001:{key}.pub\n")
        result = local("-v", "setup", NAME, timeout=1200)
        assert result.returncode == 0, result.output
        assert "changed: [compute001]" in result.stdout.split("Restart slurmd so that it loads the PMIx")[1] \
            .split("TASK [")[0], result.stdout[-3000:]
        result = ssh_as(local, NAME, "alice", key, "srun -N2 -n4 ./hello")
        assert result.returncode == 0 and len(mpi_ranks(result.stdout)) == 4, result.output
        for node in nodes:
            result = local("ssh", NAME, "-n", node, "--", "getent passwd bob; sudo chage -l bob | grep 'Account expires'")
            assert result.stdout.split(":")[2:4] == [str(uids["bob"][0])] * 2, result.output
            assert "/usr/sbin/nologin" in result.stdout and "Jan 01, 1970" in result.stdout, result.output
        result = local("ssh", NAME, "--", "sudo -u bob ssh -o BatchMode=yes compute001 true; ls -d /home/bob")
        assert result.returncode == 0 and result.stdout.strip() == "/home/bob", result.output
        assert "expired" in result.stderr or "not available" in result.stderr, result.output
        # a second setup changes nothing
        assert_setup_changes_nothing(local, NAME, nodes)
        # a daemon stopped by hand: the next setup sees it on that node and runs the playbook
        assert local("ssh", NAME, "-n", "compute002", "--", "sudo systemctl stop munge").returncode == 0
        result = local("setup", NAME, timeout=1200)
        assert result.returncode == 0, result.output
        assert "compute002 changed since the last whole setup" in result.stderr, result.output
        result = local("ssh", NAME, "-n", "compute002", "--", "systemctl is-active munge")
        assert result.stdout.strip() == "active", result.output

        # the frontend restarts (pause and resume): the accounting database kept alice's jobs
        assert local("pause", NAME, "--yes").returncode == 0
        result = local("resume", NAME)
        assert result.returncode == 0, result.output
        # (resume returns once the nodes accept SSH: MariaDB and slurmdbd may still be starting)
        deadline = time.monotonic() + 180
        while True:
            result = ssh_as(local, NAME, "alice", key, "sacct -X -n -P -o JobID,State")
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert result.returncode == 0, result.output
        assert {f"{job}|COMPLETED" for job in jobs} <= set(result.stdout.split()), result.output
        wait_idle(local, NAME, computes)

        # a new compute node joins SLURM
        result = local("resize", NAME, "-a", "1:compute", timeout=1500)
        assert result.returncode == 0, result.output
        computes.append("compute003")
        assert sinfo_nodes(local, NAME) == {node: "idle" for node in computes}
        result = local("ssh", NAME, "--", f"srun -N{len(computes)} hostname")
        assert result.returncode == 0, result.output
        assert sorted(result.stdout.split()) == computes
        result = local("ssh", NAME, "--", "ssh -o BatchMode=yes compute003 hostname")
        assert result.stdout.strip() == "compute003", result.output
        # a removed node leaves SLURM and /etc/hosts (remove-node sets the others up again)
        result = local("remove-node", NAME, "compute002", "--yes", timeout=1500)
        assert result.returncode == 0, result.output
        computes.remove("compute002")
        assert sinfo_nodes(local, NAME) == {node: "idle" for node in computes}
        result = ssh_as(local, NAME, "alice", key, f"srun -N{len(computes)} -n4 ./hello")
        assert result.returncode == 0, result.output
        assert sorted({r[2] for r in mpi_ranks(result.stdout)}) == computes
        result = local("ssh", NAME, "-n", "compute001", "--", "cat /etc/hosts")
        assert "compute003" in result.stdout and "compute002" not in result.stdout, result.output
    finally:
        assert local("stop", NAME, "--yes").returncode == 0
    assert containers_of(local.docker, NAME) == []
