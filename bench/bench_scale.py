#!/usr/bin/env python3
"""A 1+16 SLURM cluster on the local cloud: start, a second setup, resize from a baked image,
and the controller's CPU per node (issue 13, "Nodes ready in seconds").

Usage::

    .venv/bin/python bench/bench_scale.py [--computes 16] [--add 4]

In one run, on one cluster ``bench-scale-PID`` of the bundled ``local-slurm``
template in a fresh HOME, it times, each as a whole CLI process:

1. ``start local-slurm --nodes 1:frontend,16:compute``, nodes from the plain
   node image (packages from the local cloud's apt cache, warm after the first
   run on the machine), until ``srun -N16 hostname`` has printed every name
   (goal: under 90 s);
2. a second ``setup`` of the unchanged cluster (goal: under 15 s): it asks every
   node for a digest of what the playbook manages and, all unchanged, does not
   run the playbook; then ``setup --full``, which runs it all the same;
3. ``bake --kind compute``, then ``resize -a 4:compute`` (the new nodes boot from
   the baked image; the setup installs nothing on them, and the nodes that were
   there only learn of them) until ``srun -N20 hostname`` works (goal: under 20 s);
4. the controller's CPU seconds per node of a ``setup --full``
   (``getrusage(RUSAGE_CHILDREN)``: elasticcluster, ansible-playbook and its
   workers, ssh; the nodes' own CPU is not in it) with 16, 8 and 4 compute
   nodes (``resize -r`` between them): the goal is flat or falling.

It prints each figure as it comes, then a table of figures, goals and
goal/figure ratios. Every figure is one run (a 1+16 start takes minutes on a
small machine); run it again for more. The cluster is stopped and its image
deleted in ``finally``.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _local_common import docker_ok, ec, fresh_home, machine_note, remove_cluster, sigterm_as_exit  # noqa: E402

GOALS = {"start 1+16 to srun -N16": 90.0, "second setup 1+16": 15.0, "resize -a 4 (baked) to srun": 20.0}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(home: str, *args: str, timeout: float = 3600) -> tuple[float, float]:
    """(wall seconds, controller CPU seconds) of ``elasticcluster ARGS``."""
    cpu, began = children_cpu(), time.monotonic()
    ec(home, *args, timeout=timeout)
    return time.monotonic() - began, children_cpu() - cpu


def srun_all(home: str, name: str, count: int) -> None:
    out = ec(home, "ssh", name, "--", f"srun -N{count} hostname", timeout=600).stdout.split()
    if len(set(out)) != count:
        raise RuntimeError(f"srun -N{count} ran on {sorted(set(out))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computes", type=int, default=16)
    parser.add_argument("--add", type=int, default=4)
    args = parser.parse_args()
    if not docker_ok():
        return 1
    sigterm_as_exit()
    load = os.getloadavg()
    home = fresh_home("bench-scale")
    name = f"bench-scale-{os.getpid()}"
    n, add = args.computes, args.add
    figures: dict[str, float] = {}
    cpu_per_node: dict[int, float] = {}

    def note(what: str, seconds: float, extra: str = "") -> None:
        figures[what] = seconds
        print(f"{what}: {seconds:.1f}s{extra}", flush=True)

    try:
        began = time.monotonic()
        ec(home, "start", "local-slurm", "-n", name, "--nodes", f"1:frontend,{n}:compute", timeout=3600)
        srun_all(home, name, n)
        note(f"start 1+{n} to srun -N{n}", time.monotonic() - began)

        wall, cpu = timed(home, "setup", name)
        note(f"second setup 1+{n}", wall, f" (controller CPU {cpu:.1f}s)")
        wall, cpu = timed(home, "setup", "--full", name)
        cpu_per_node[n] = cpu / (n + 1)
        note(f"setup --full 1+{n}", wall, f" (controller CPU {cpu:.1f}s, {cpu_per_node[n]:.2f}s per node)")

        wall, _ = timed(home, "bake", name, "--kind", "compute")
        note("bake of a compute node", wall)
        began = time.monotonic()
        ec(home, "resize", name, "-a", f"{add}:compute", "--yes", timeout=3600)
        srun_all(home, name, n + add)
        note(f"resize -a {add} (baked) to srun", time.monotonic() - began)

        have = n + add
        for size in sorted({n // 2, n // 4} - {0}, reverse=True):
            ec(home, "resize", name, "-r", f"{have - size}:compute", "--yes", timeout=3600)
            have = size
            wall, cpu = timed(home, "setup", "--full", name)
            cpu_per_node[size] = cpu / (size + 1)
            note(f"setup --full 1+{size}", wall, f" (controller CPU {cpu:.1f}s, {cpu_per_node[size]:.2f}s per node)")
    finally:
        remove_cluster(home, name)
    print()
    print(f"{'figure':>34} {'seconds':>8} {'goal':>6} {'goal / figure':>14}")
    for what, seconds in figures.items():
        goal = GOALS.get(what.replace(f"1+{n}", "1+16").replace(f"-N{n}", "-N16").replace(f"-a {add}", "-a 4"))
        tail = f" {goal:5.0f}s {goal / seconds:13.2f}x  {'met' if seconds <= goal else 'missed'}" if goal else ""
        print(f"{what:>34} {seconds:8.1f}{tail}")
    print()
    print("controller CPU seconds per node of a setup --full (goal: flat or falling as nodes grow):")
    for size in sorted(cpu_per_node):
        print(f"  1+{size:<3} {cpu_per_node[size]:6.2f}s per node ({cpu_per_node[size] * (size + 1):.1f}s in all)")
    print(machine_note(load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
