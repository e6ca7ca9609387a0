#!/usr/bin/env python3
"""Time to a working SLURM cluster on the local cloud (issue 6, "Speed").

Usage::

    .venv/bin/python bench/bench_slurm.py [--runs N] [--sizes 2,4]

For each number of compute nodes (default 2 and 4, plus one frontend) and each
of ``--runs`` runs (default 2) it runs, in a fresh HOME with the bundled
configuration, ``elasticcluster start local-slurm -n slurm-bench-... --nodes
1:frontend,N:compute`` and then ``elasticcluster ssh NAME -- srun -NN hostname``
until it prints every compute node's name. The start command's progress lines
on stderr are timestamped as they arrive, which splits the time into

* **provisioning**: from the start to the last ``N node(s) running`` line
  (containers created and booted);
* **SSH wait**: from there to the last ``accepts SSH`` line;
* **setup**: from there to the end of ``start`` (ansible-playbook: the whole
  bundled site.yml, i.e. common, NFS (off on the local cloud) and SLURM);
* **check**: the ``srun`` check (the cluster is usable when it passes).

Before each run it notes whether the shared apt cache of the local cloud
(``/var/cache/elasticcluster/apt``) already holds SLURM's packages (warm) or
not (cold). It prints every run, the medians per size, and compares them
with the anchors: ElastiCluster users reported about 30 minutes for 2 nodes
before tuning and about 10 after; Magic Castle documents about 15 minutes of
configuration; the target is a 1+4 cluster in under 5 minutes on this
machine. Every cluster is stopped in ``finally``.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ELASTICCLUSTER = str(VENV_BIN / "elasticcluster") if (VENV_BIN / "elasticcluster").exists() \
    else shutil.which("elasticcluster") or "elasticcluster"
APT_CACHE = Path("/var/cache/elasticcluster/apt")
ANCHORS = [("ElastiCluster, 2 nodes, untuned (users' reports)", 30 * 60),
           ("ElastiCluster, 2 nodes, tuned (users' reports)", 10 * 60),
           ("Magic Castle configuration (its docs)", 15 * 60)]
TARGET = 5 * 60


def env_for(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["HOME"] = home
    return env


def cache_state() -> str:
    debs = [p.name for p in APT_CACHE.glob("*.deb")] if APT_CACHE.is_dir() else []
    wanted = ("slurmctld_", "slurmd_", "slurm-client_", "munge_")
    return "warm" if all(any(d.startswith(w) for d in debs) for w in wanted) else "cold"


def timed_start(home: str, name: str, computes: int) -> tuple[dict[str, float], int, str]:
    """Run start, timestamping its stderr lines; returns the phase ends (s from the start)."""
    began = time.monotonic()
    proc = subprocess.Popen([ELASTICCLUSTER, "start", "local-slurm", "-n", name,
                             "--nodes", f"1:frontend,{computes}:compute"],
                            env=env_for(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    marks: dict[str, float] = {}
    lines: list[str] = []
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    for line in proc.stderr:
        now = time.monotonic() - began
        lines.append(line)
        if re.search(r"\d+ node\(s\) running", line):
            marks["running"] = now
        elif "accepts SSH" in line:
            marks["ssh"] = now
        elif line.startswith("setup:") and "setup_begin" not in marks:
            marks["setup_begin"] = now
    rc = proc.wait()
    reader.join(timeout=5)
    marks["end"] = time.monotonic() - began
    return marks, rc, "".join(lines[-30:]) + "".join(out)


def check(home: str, name: str, computes: int, timeout: float = 300) -> float:
    """Seconds until ``srun -N<computes> hostname`` prints every compute node."""
    began = time.monotonic()
    wanted = sorted(f"compute{i:03d}" for i in range(1, computes + 1))
    while True:
        proc = subprocess.run([ELASTICCLUSTER, "ssh", name, "--", f"srun -N{computes} hostname"],
                              env=env_for(home), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode == 0 and sorted(proc.stdout.split()) == wanted:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"srun check failed: {proc.stdout}{proc.stderr}")
        time.sleep(2)


def one_run(computes: int, index: int) -> dict:
    home = tempfile.mkdtemp(prefix="slurm-bench-home-")
    name = f"slurm-bench-{os.getpid()}-{computes}-{index}"
    cache = cache_state()
    try:
        marks, rc, tail = timed_start(home, name, computes)
        if rc != 0:
            raise RuntimeError(f"start exited {rc}:\n{tail}")
        checked = check(home, name, computes)
        ssh_end = marks.get("ssh", marks.get("setup_begin", marks["running"]))
        return {"computes": computes, "cache": cache,
                "provisioning": marks["running"], "ssh": ssh_end - marks["running"],
                "setup": marks["end"] - ssh_end, "check": checked, "total": marks["end"] + checked}
    finally:
        subprocess.run([ELASTICCLUSTER, "stop", name, "--yes"], env=env_for(home), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=600)
        shutil.rmtree(home, ignore_errors=True)


def minutes(seconds: float) -> str:
    return f"{seconds:6.1f}s ({seconds / 60:4.1f} min)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sizes", default="2,4", help="numbers of compute nodes (plus one frontend)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for index in range(args.runs):
        for computes in sizes:
            result = one_run(computes, index)
            results.append(result)
            print(f"run {index + 1}, 1+{computes} nodes, apt cache {result['cache']}: "
                  f"provisioning {result['provisioning']:.1f}s, SSH wait {result['ssh']:.1f}s, "
                  f"setup {result['setup']:.1f}s, check {result['check']:.1f}s, "
                  f"total {result['total']:.1f}s", flush=True)
    print()
    print(f"medians over {args.runs} run(s) (cores: {os.cpu_count()}):")
    print(f"{'nodes':>6} {'provisioning':>13} {'SSH wait':>9} {'setup':>8} {'check':>7} {'total':>22}  cache")
    medians = {}
    for computes in sizes:
        rows = [r for r in results if r["computes"] == computes]
        med = {k: statistics.median(r[k] for r in rows)
               for k in ("provisioning", "ssh", "setup", "check", "total")}
        medians[computes] = med
        caches = ",".join(r["cache"] for r in rows)
        print(f"{'1+' + str(computes):>6} {med['provisioning']:12.1f}s {med['ssh']:8.1f}s "
              f"{med['setup']:7.1f}s {med['check']:6.1f}s {minutes(med['total']):>22}  {caches}")
    print()
    for label, seconds in ANCHORS:
        for computes, med in medians.items():
            print(f"1+{computes} vs {label} ({seconds // 60} min): {seconds / med['total']:.1f}x faster")
    if 4 in medians:
        verdict = "met" if medians[4]["total"] < TARGET else "NOT met"
        print(f"target 1+4 under {TARGET // 60} min: {verdict} ({minutes(medians[4]['total'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
