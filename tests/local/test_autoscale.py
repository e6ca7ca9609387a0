"""Elastic SLURM on real nodes: queued jobs grow the cluster, idle nodes go away.

``local-slurm-elastic`` starts a frontend only; SLURM knows compute001-004 as
powered-down cloud nodes. With ``elasticcluster autoscale`` running, jobs make
the nodes they need appear, idle nodes are terminated after ``autoscale_idle``,
a killed autoscaler loses nothing when started again, and a node that never
comes up is terminated and marked DOWN while the job runs on others.
"""
from __future__ import annotations

import re
import signal
import time

import pytest

from tests.local.conftest import containers_of

pytestmark = pytest.mark.slow

NAME = "elastic1"


def sinfo(local) -> dict[str, str]:
    result = local("ssh", NAME, "--", "sinfo --noheader --Node --format '%N %t'")
    assert result.returncode == 0, result.output
    return dict(line.split() for line in result.stdout.splitlines() if line.strip())


def computes(local) -> list[str]:
    return sorted(c.labels["elasticcluster.node"] for c in containers_of(local.docker, NAME)
                  if c.labels["elasticcluster.node"].startswith("compute"))


def submit(local, nodes: int, tag: str) -> str:
    result = local("ssh", NAME, "--", f"sbatch -N{nodes} -o /home/debian/{tag}.out --wrap 'srun hostname'")
    assert result.returncode == 0, result.output
    return re.search(r"Submitted batch job (\d+)", result.stdout).group(1)


def wait_job(local, job: str, tag: str, timeout: float) -> list[str]:
    """The hostnames the job printed, once it has left the queue having completed. (A job
    SLURM requeues, when a node failed it, shows NODE_FAIL in sacct for a while: its first
    run's record; it is in the queue again meanwhile.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = local("ssh", NAME, "--", f"squeue -h -j {job} -o %T 2>/dev/null || true").stdout.split()
        if not queued:
            break
        time.sleep(3)
    else:
        raise AssertionError(f"job {job} did not complete in {timeout}s: "
                             + local("ssh", NAME, "--", "squeue; sinfo -N").stdout)
    for _ in range(30):  # slurmctld sends the job's end to slurmdbd as it can
        states = local("ssh", NAME, "--", f"sacct -n -X -j {job} -o State%20").stdout.split()
        if states and states[-1] == "COMPLETED":
            break
        time.sleep(2)
    assert states and states[-1] == "COMPLETED", states
    return local("ssh", NAME, "--", f"cat /home/debian/{tag}.out").stdout.split()


def wait_for(predicate, timeout: float, what: str, pause: float = 2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"not within {timeout}s: {what}")


def autoscaler(local):
    return local.popen("autoscale", NAME, "--interval", "2")


def test_jobs_grow_the_cluster_and_idle_nodes_go(local):
    local.start("local-slurm-elastic", NAME)
    scaler = None
    try:
        assert computes(local) == []
        assert sinfo(local) == {f"compute00{i}": "idle~" for i in range(1, 5)}
        scaler = autoscaler(local)
        job = submit(local, 3, "first")
        hosts = wait_job(local, job, "first", 600)
        assert len(set(hosts)) == 3 and all(h.startswith("compute") for h in hosts), hosts
        # idle nodes go: SLURM powers them down after autoscale_idle, the autoscaler terminates them
        wait_for(lambda: computes(local) == [], 300, "the idle nodes terminated")
        wait_for(lambda: set(sinfo(local).values()) == {"idle~"}, 120, "sinfo shows them powered down")
        # killed while it makes nodes, then started again: the job completes, nothing leaks
        scaler.kill()
        scaler.communicate()
        scaler = autoscaler(local)
        job = submit(local, 2, "second")
        wait_for(lambda: computes(local), 300, "a node being made")
        scaler.kill()
        scaler.communicate()
        scaler = autoscaler(local)
        hosts = wait_job(local, job, "second", 600)
        assert len(set(hosts)) == 2, hosts
        wait_for(lambda: computes(local) == [], 300, "the idle nodes terminated again")
        # a node that never comes up is terminated and DOWN; the job runs on the others
        job = submit(local, 2, "third")
        victim = wait_for(lambda: computes(local), 300, "a node being made")[0]
        container = next(c for c in containers_of(local.docker, NAME) if c.labels["elasticcluster.node"] == victim)
        container.pause()  # its SSH never answers: the autoscaler gives up after startup_timeout
        hosts = wait_job(local, job, "third", 900)
        assert len(set(hosts)) == 2 and victim not in hosts, hosts
        # DOWN (down#: SLURM waits for it until ResumeTimeout), or powered down again and usable
        # later (idle_on_node_suspend)
        assert sinfo(local)[victim] in ("down", "down#", "down~", "down%", "idle~", "idle%"), sinfo(local)
        assert victim not in computes(local)
        log = (local.storage / NAME / "autoscale.log").read_text()
        assert f"{victim}: " in log and "DOWN in SLURM" in log
    finally:
        if scaler is not None and scaler.poll() is None:
            scaler.send_signal(signal.SIGTERM)
            out, err = scaler.communicate(timeout=120)
            assert "stopped" in err, err
        assert local("stop", NAME, "--yes").returncode == 0
        assert containers_of(local.docker, NAME) == []
