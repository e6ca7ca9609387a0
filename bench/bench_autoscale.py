#!/usr/bin/env python3
"""Seconds from ``sbatch -N2`` to the job running, on an elastic SLURM cluster scaled to zero.

Usage::

    .venv/bin/python bench/bench_autoscale.py [--runs N] [--no-bake]

It starts the bundled ``local-slurm-elastic`` template (a frontend only;
compute001-004 are SLURM cloud nodes) in a fresh HOME, runs ``elasticcluster
autoscale`` beside it, and for each of ``--runs`` runs (default 3): waits
until no compute container exists (scaled to zero), submits ``sbatch -N2
--wrap 'srun hostname'`` on the frontend and times the job until SLURM says
RUNNING (``squeue``), then until it completed. Nodes boot from the plain
node image (packages from the warm apt cache of the local cloud).

Then (unless ``--no-bake``) it bakes an image of a set-up compute node
(``elasticcluster bake NAME --kind compute``) and times the same runs with
nodes booting from it. It prints every run, the medians side by side, and the
ratios to the issue's goals: under 60 s from a plain image, under 20 s from a
baked one. The cluster is stopped (and its image deleted) in ``finally``.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _local_common import (  # noqa: E402
    CLUSTER_LABEL,
    ELASTICCLUSTER,
    clean_env,
    docker,
    docker_ok,
    ec,
    fresh_home,
    machine_note,
    median,
    remove_cluster,
    sigterm_as_exit,
)

GOALS = {"plain image": 60.0, "baked image": 20.0}


def computes(name: str) -> list[str]:
    """The compute nodes of cluster ``name`` that have a container."""
    out = docker("ps", "-a", "--filter", f"label={CLUSTER_LABEL}={name}", "--format",
                 '{{.Label "elasticcluster.node"}}', check=False)
    return [node for node in out.split() if node.startswith("compute")]


def on_frontend(home: str, name: str, command: str, timeout: float = 60) -> str:
    return ec(home, "ssh", name, "--", command, timeout=timeout).stdout


def wait(predicate, timeout: float, what: str, pause: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
    raise RuntimeError(f"not within {timeout:.0f}s: {what}")


def one_run(home: str, name: str) -> dict[str, float]:
    wait(lambda: not computes(name), 600, "the cluster scaled to zero", pause=3)
    began = time.monotonic()
    out = on_frontend(home, name, "sbatch -N2 -o /dev/null --wrap 'srun hostname'")
    job = re.search(r"Submitted batch job (\d+)", out).group(1)

    def state() -> str:
        return on_frontend(home, name, f"squeue -h -j {job} -o %T || true").strip()

    wait(lambda: state() in ("RUNNING", "COMPLETING", ""), 900, f"job {job} running", pause=0.5)
    running = time.monotonic() - began
    wait(lambda: state() == "", 300, f"job {job} done", pause=1)
    return {"running": running, "done": time.monotonic() - began}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-bake", action="store_true", help="only the runs from the plain image")
    args = parser.parse_args()
    if not docker_ok():
        return 1
    sigterm_as_exit()
    load = os.getloadavg()
    home = fresh_home("bench-autoscale")
    name = f"bench-elastic-{os.getpid()}"
    scaler = None
    results: dict[str, list[dict[str, float]]] = {}
    try:
        began = time.monotonic()
        ec(home, "start", "local-slurm-elastic", "-n", name, timeout=1800)
        print(f"start of {name} (frontend only): {time.monotonic() - began:.0f}s", flush=True)
        scaler = subprocess.Popen([ELASTICCLUSTER, "autoscale", name, "--interval", "1"], env=clean_env(home),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        modes = ["plain image"] + ([] if args.no_bake else ["baked image"])
        for mode in modes:
            if mode == "baked image":
                # nodes up for a job long enough to bake one of them
                out = on_frontend(home, name, "sbatch -N1 -o /dev/null --wrap 'sleep 600'")
                job = re.search(r"Submitted batch job (\d+)", out).group(1)
                wait(lambda job=job: on_frontend(home, name, f"squeue -h -j {job} -o %T").strip() == "RUNNING",
                     900, "a node to bake", pause=2)
                began = time.monotonic()
                ec(home, "bake", name, "--kind", "compute", timeout=1200)
                print(f"bake of a compute node: {time.monotonic() - began:.0f}s", flush=True)
                on_frontend(home, name, f"scancel {job}")
            for index in range(args.runs):
                result = one_run(home, name)
                results.setdefault(mode, []).append(result)
                print(f"{mode}, run {index + 1}: running after {result['running']:.1f}s, "
                      f"done after {result['done']:.1f}s", flush=True)
    finally:
        if scaler is not None:
            scaler.send_signal(signal.SIGTERM)
            try:
                scaler.wait(timeout=120)
            except subprocess.TimeoutExpired:
                scaler.kill()
        remove_cluster(home, name)
    print()
    print(f"medians over {args.runs} run(s), from `sbatch -N2` on a cluster scaled to zero:")
    print(f"{'nodes boot from':>16} {'job running':>12} {'job done':>9} {'goal':>6} {'goal / median':>14}")
    for mode, runs in results.items():
        running = median([r["running"] for r in runs])
        done = median([r["done"] for r in runs])
        goal = GOALS[mode]
        verdict = "met" if running <= goal else "missed"
        print(f"{mode:>16} {running:11.1f}s {done:8.1f}s {goal:5.0f}s {goal / running:13.2f}x  {verdict}")
    if len(results) == 2:
        ratio = median([r["running"] for r in results["plain image"]]) / \
            median([r["running"] for r in results["baked image"]])
        print(f"baked image vs plain image: {ratio:.2f}x sooner")
    print(machine_note(load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
