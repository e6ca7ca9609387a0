"""The bundled Grid Engine playbook (seed 4.4.2) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes: qhost lists
every execution host with its flavor's CPUs and memory, the queue has one slot
per CPU, a `qsub -sync y` job of the login user runs on an execution host, a
job that can never fit is refused at once, a configured user compiles an MPI
program and runs it with `qsub -pe mpi 4` on both hosts, a second setup
changes nothing, a node added by resize becomes an execution host, and a node
taken away by remove-node is forgotten.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.local.conftest import (
    MPI_HELLO,
    add_settings,
    assert_setup_changes_nothing,
    mpi_ranks,
    ssh_as,
    user_key,
)

pytestmark = pytest.mark.slow


def qhost(local, name: str) -> dict[str, str]:
    """Execution host -> its architecture as qhost shows it ("-" while its sge_execd is silent)."""
    result = local("ssh", name, "--", "qhost")
    assert result.returncode == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    return {row[0]: row[1] for row in rows if row and row[0] != "global"}


def run_job(local, name: str, computes: list[str]) -> None:
    """`qsub -sync y` a job as the login user: it exits 0 and ran on an execution host.

    Its output goes to the login user's home, which the nodes share.
    """
    result = local("ssh", name, "--", 'rm -f ~/ecjob.out; qsub -sync y -b y -j y -o "$HOME/ecjob.out" '
                   "hostname && stat -c %U ~/ecjob.out && cat ~/ecjob.out")
    assert result.returncode == 0, result.output
    assert re.search(r"Job \d+ exited with exit code 0", result.output), result.output
    owner, host = result.stdout.split()[-2:]
    assert owner == "debian" and host in computes, result.stdout


def check_mpi(local, name: str, key) -> None:
    """alice compiles the MPI hello world and runs it in the parallel environment mpi: 4 ranks,
    2 on each host (Open MPI reads the hosts Grid Engine gave it and starts its ranks with qrsh)."""
    result = ssh_as(local, name, "alice", key, "cat > hello.c && mpicc -o hello hello.c", stdin=MPI_HELLO)
    assert result.returncode == 0, result.output
    result = ssh_as(local, name, "alice", key,
                    "printf '#!/bin/bash\\nmpirun ./hello\\n' > hello.sh && "
                    "qsub -sync y -pe mpi 4 -cwd -j y -o hello.out hello.sh && cat hello.out")
    assert result.returncode == 0 and "exit code 0" in result.stdout, result.output
    ranks = mpi_ranks(result.stdout)
    # hello.out gathers every run of the job: Grid Engine reruns a job whose host failed it
    # (seen once on a loaded machine), and each run must have been whole and right
    assert ranks and len(ranks) % 4 == 0, result.output
    for run in range(0, len(ranks), 4):
        these = sorted(ranks[run:run + 4])
        assert [r[:2] for r in these] == [(i, 4) for i in range(4)] and {r[3] for r in these} == {6}, \
            result.output
        assert sorted(r[2] for r in these) == ["compute001"] * 2 + ["compute002"] * 2, result.output


def test_gridengine_cluster_runs_jobs_grows_and_shrinks(local, home):
    name = "sge-hpc1"
    key = user_key(home, "alice")
    add_settings(local, home, "users", f"[setup/gridengine]\nglobal_var_users = alice:3001:{key}.pub\n")
    local.start("local-gridengine", name)
    try:
        computes = ["compute001", "compute002"]
        nodes = ["frontend001", *computes]
        # every execution host reports (an architecture, not "-"); the master is not one
        assert qhost(local, name) == {node: "lx-amd64" for node in computes}
        # ... with its flavor's CPUs and memory (medium: 2, 2 GiB), not the machine's
        result = local("ssh", name, "--", "qhost -h compute001 | tail -1")
        assert result.stdout.split()[2] == "2" and result.stdout.split()[7] == "2.0G", result.output
        # all.q on @allhosts, one slot per CPU of the flavor; parallel environments smp and mpi
        result = local("ssh", name, "--", "qconf -shgrp @allhosts; qconf -sq all.q; qconf -sp mpi")
        assert result.returncode == 0, result.output
        assert re.search(r"^hostlist compute001 compute002$", result.stdout, re.M), result.stdout
        assert re.search(r"^slots\s+1,\[compute001=2\],\[compute002=2\]$", result.stdout, re.M), result.stdout
        assert re.search(r"^pe_list\s+smp mpi$", result.stdout, re.M), result.stdout
        assert re.search(r"^control_slaves\s+TRUE$", result.stdout, re.M), result.stdout
        # a job of the login user runs, and qsub -sync y passes its exit status
        run_job(local, name, computes)
        result = local("ssh", name, "--", "qsub -sync y -b y false")
        assert result.returncode == 1 and "exit code 1" in result.output, result.output
        result = local("ssh", name, "--", "qsub -sync y -pe smp 2 -b y hostname")
        assert result.returncode == 0 and "exit code 0" in result.output, result.output
        # a job that no host can ever run is refused at once
        for job in ("-pe smp 3", "-pe mpi 5", "-l mem_total=4G"):
            result = local("ssh", name, "--", f"timeout 30 qsub {job} -b y true")
            assert result.returncode == 1 and "no suitable queues" in result.output, (job, result.output)
        check_mpi(local, name, key)
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name, nodes)
        # a new compute node becomes an execution host and runs jobs
        started = time.monotonic()
        result = local("resize", name, "-a", "1:compute", timeout=1500)
        assert result.returncode == 0, result.output
        print(f"resize: {time.monotonic() - started:.0f}s")
        computes.append("compute003")
        assert qhost(local, name) == {node: "lx-amd64" for node in computes}
        result = local("ssh", name, "--", "qconf -sq all.q")
        assert "[compute003=2]" in result.stdout, result.stdout
        result = local("ssh", name, "--", "qsub -sync y -b y -l h=compute003 hostname")
        assert result.returncode == 0 and "exit code 0" in result.output, result.output
        # a removed node leaves Grid Engine (remove-node sets the others up again)
        result = local("remove-node", name, "compute002", "--yes", timeout=1500)
        assert result.returncode == 0, result.output
        computes.remove("compute002")
        assert qhost(local, name) == {node: "lx-amd64" for node in computes}
        result = local("ssh", name, "--", "qconf -ss; qconf -shgrp @allhosts; qconf -sq all.q")
        assert result.returncode == 0 and "compute002" not in result.stdout, result.output
        run_job(local, name, computes)
    finally:
        assert local("stop", name, "--yes").returncode == 0
