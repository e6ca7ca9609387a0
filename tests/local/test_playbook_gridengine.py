"""The bundled Grid Engine playbook (seed 4.4.2) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes: qhost lists
every execution host, the queue has one slot per CPU, a `qsub -sync y` job of
the login user runs on an execution host, a second setup changes nothing, a
node added by resize becomes an execution host, and a node taken away by
remove-node is forgotten.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.local.conftest import assert_setup_changes_nothing

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


def test_gridengine_cluster_runs_jobs_grows_and_shrinks(local):
    name = "sge-e2e1"
    local.start("local-gridengine", name)
    try:
        computes = ["compute001", "compute002"]
        nodes = ["frontend001", *computes]
        # every execution host reports (an architecture, not "-"); the master is not one
        assert qhost(local, name) == {node: "lx-amd64" for node in computes}
        # all.q on @allhosts, one slot per CPU of the flavor (small: 1)
        result = local("ssh", name, "--", "qconf -shgrp @allhosts; qconf -sq all.q")
        assert result.returncode == 0, result.output
        assert re.search(r"^hostlist compute001 compute002$", result.stdout, re.M), result.stdout
        assert re.search(r"^slots\s+1,\[compute001=1\],\[compute002=1\]$", result.stdout, re.M), result.stdout
        # a job of the login user runs, and qsub -sync y passes its exit status
        run_job(local, name, computes)
        result = local("ssh", name, "--", "qsub -sync y -b y false")
        assert result.returncode == 1 and "exit code 1" in result.output, result.output
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
        assert "[compute003=1]" in result.stdout, result.stdout
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
