#!/usr/bin/env python3
"""Start-up benchmark of the local cloud against the bare Docker engine (issue 4, "Speed").

Usage::

    .venv/bin/python bench/bench_local_start.py [--runs N] [--sizes 1,4,8]

For each cluster size N (default 1, 4 and 8 nodes) and each of ``--runs``
runs (default 5) it times

* **elasticcluster**: the whole process
  ``elasticcluster start local-slurm --nodes 1:frontend,(N-1):compute --no-setup -n bench-...``,
  which returns when every node runs and accepts an SSH login. Afterwards
  (untimed) each node's IP is read from ``list-nodes NAME --json`` and an SSH
  banner is read from port 22 of each, then ``stop NAME --yes``.
* **bare engine**: ``docker network create`` (a user-defined bridge) plus N
  ``docker run -d`` started at once, with the options ``drivers/local.py``
  ``create_node`` uses (--cap-add SYS_ADMIN, --security-opt seccomp=unconfined,
  -v /sys/fs/cgroup:/sys/fs/cgroup:ro, tmpfs /run /run/lock /tmp, container=docker,
  SIGRTMIN+3, CPU/memory of the ``small`` flavor, the same image), then one
  ``docker inspect`` for the addresses and an SSH poll loop written here:
  connect to port 22 of each container every 20 ms until the banner arrives.
  These nodes get no login user or key (elasticcluster's do); the image's
  first-boot unit makes their host keys (``ssh-keygen -A``, RSA included).
* **bare + host key** (informative, ``--no-bare-key`` skips it): the same, plus
  a fresh ed25519 host key per container bind-mounted into /etc/ssh, so that
  the first boot skips ``ssh-keygen -A`` as elasticcluster's nodes do (the
  driver puts a host key in): the same boot work on both sides.

The variants are interleaved run by run (rotating which goes first) so that
load from elsewhere on the machine hits all alike. One untimed warm-up comes
first (it also deploys the config and makes the key pair in the benchmark's
fresh HOME).

It prints per N the median of each, the ratio elasticcluster / bare (target:
under 1.5x), the ratio to bare + host key, every run and the minimum, and the
8-node/1-node ratio of elasticcluster (target: under 2x).
Every cluster is named ``bench-start-PID-...``; every bare container and
network carries the label ``elasticcluster.bench=start-PID``; all are removed
in ``finally``. Exit status 0 unless the benchmark itself fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local_common import (  # noqa: E402
    BENCH_LABEL,
    IMAGE,
    docker,
    docker_ok,
    ec,
    fresh_home,
    machine_note,
    median,
    node_ips,
    remove_cluster,
    remove_labelled,
    sigterm_as_exit,
    ssh_banner,
)

TARGET_RATIO = 1.5
TARGET_SCALING = 2.0
POLL = 0.02
TIMEOUT = 240
NAMES = {"ec": "elasticcluster", "bare": "bare", "key": "bare+host key"}


def node_spec(n: int) -> str:
    return f"1:frontend,{n - 1}:compute"


def run_elasticcluster(home: str, name: str, n: int, started: list[str]) -> float:
    started.append(name)
    t0 = time.monotonic()
    ec(home, "start", "local-slurm", "--nodes", node_spec(n), "--no-setup", "-n", name, timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    ips = node_ips(home, name)
    if len(ips) != n:
        raise RuntimeError(f"{name}: {len(ips)} node(s) listed, {n} expected")
    for node, ip in ips.items():
        if not ip or ssh_banner(ip, timeout=5) is None:
            raise RuntimeError(f"{name}: {node} ({ip}) shows no SSH banner after start returned")
    remove_cluster(home, name)
    started.remove(name)
    return elapsed


def run_bare(label: str, prefix: str, n: int, host_key: bool = False) -> float:
    """network + N docker run at once + inspect + SSH banner poll; returns the seconds taken.

    ``host_key``: each container also gets a fresh ed25519 host key bind-mounted
    into /etc/ssh, so that its first boot skips ``ssh-keygen -A`` as elasticcluster's
    nodes do (drivers/local.py puts one in); the default is the image's own first boot.
    """
    network = f"{prefix}-net"
    names = [f"{prefix}-frontend001"] + [f"{prefix}-compute{i:03d}" for i in range(1, n)]
    devices = ["--device", "/dev/fuse:/dev/fuse:rwm"] if os.path.exists("/dev/fuse") else []
    keys = tempfile.mkdtemp(prefix=f"{prefix}-keys-") if host_key else None

    def run(name: str) -> None:
        mounts = []
        if keys:
            key = os.path.join(keys, name)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=30)
            mounts = ["-v", f"{key}:/etc/ssh/ssh_host_ed25519_key:ro",
                      "-v", f"{key}.pub:/etc/ssh/ssh_host_ed25519_key.pub:ro"]
        docker("run", "-d", "--name", name, *mounts, "--hostname", name.rsplit("-", 1)[1],
               "--label", f"{BENCH_LABEL}={label}", "--network", network,
               "--network-alias", name.rsplit("-", 1)[1],
               "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
               "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
               "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
               "--cpus", "1", "--memory", "1024m", "--stop-signal", "SIGRTMIN+3",
               "-e", "container=docker", *devices, IMAGE, timeout=TIMEOUT)

    t0 = time.monotonic()
    deadline = t0 + TIMEOUT
    try:
        docker("network", "create", "--driver", "bridge", "--label", f"{BENCH_LABEL}={label}", network)
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(run, names))
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        ips = [line.split()[0] for line in docker("inspect", "-f", fmt, *names).splitlines() if line.split()]
        if len(ips) != n:
            raise RuntimeError(f"bare: {len(ips)} addresses for {n} containers")

        def poll(ip: str) -> None:
            while ssh_banner(ip, timeout=1.0) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bare: no SSH banner from {ip} in {TIMEOUT}s")
                time.sleep(POLL)

        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(poll, ips))
        return time.monotonic() - t0
    finally:
        remove_labelled(label)
        if keys:
            shutil.rmtree(keys, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1,4,8", help="comma-separated node counts (default 1,4,8)")
    parser.add_argument("--no-bare-key", action="store_true",
                        help="skip the informative third column (bare engine + injected host key)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not docker_ok():
        return 1
    sigterm_as_exit()
    load0 = os.getloadavg()
    pid = os.getpid()
    label = f"start-{pid}"
    home = fresh_home("bench-start")
    started: list[str] = []
    kinds = ["ec", "bare"] + ([] if args.no_bare_key else ["key"])
    results: dict[int, dict[str, list[float]]] = {n: {k: [] for k in kinds} for n in sizes}
    try:
        print(f"warm-up (untimed) in HOME={home} ...", file=sys.stderr, flush=True)
        run_elasticcluster(home, f"bench-start-{pid}-warm", 1, started)
        run_bare(label, f"bench-bare-{pid}-warm", 1)
        for n in sizes:
            for i in range(args.runs):
                order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]  # rotate who goes first
                for which in order:
                    if which == "ec":
                        t = run_elasticcluster(home, f"bench-start-{pid}-{n}n{i}", n, started)
                    else:
                        t = run_bare(label, f"bench-{which}-{pid}-{n}n{i}", n, host_key=which == "key")
                    results[n][which].append(t)
                print(f"  N={n} run {i + 1}/{args.runs}: "
                      + ", ".join(f"{NAMES[k]} {results[n][k][-1]:.2f}s" for k in kinds),
                      file=sys.stderr, flush=True)
    finally:
        for name in list(started):
            remove_cluster(home, name)
        remove_labelled(label)
        shutil.rmtree(home, ignore_errors=True)

    print()
    print(f"Local cloud: start to all nodes SSH-ready, median of {args.runs} runs, seconds "
          "(elasticcluster start --no-setup vs docker run + SSH poll)")
    line = f"{'N':>3}  {'elasticcluster':>14}  {'bare engine':>11}  {'ratio':>6}  target {TARGET_RATIO}x"
    if "key" in kinds:
        line += f"    {'bare+host key':>13}  {'ratio':>6}"
    print(line)
    for n in sizes:
        m = {k: median(v) for k, v in results[n].items()}
        ratio = m["ec"] / m["bare"]
        line = (f"{n:>3}  {m['ec']:>14.2f}  {m['bare']:>11.2f}  {ratio:>5.2f}x  "
                f"{'ok' if ratio < TARGET_RATIO else 'MISSED':<10}")
        if "key" in kinds:
            line += f"  {m['key']:>13.2f}  {m['ec'] / m['key']:>5.2f}x"
        print(line)
    for n in sizes:
        print(f"  N={n} runs: " + "; ".join(f"{NAMES[k]} " + " ".join(f"{t:.2f}" for t in results[n][k])
                                           for k in kinds)
              + "  (min: " + ", ".join(f"{NAMES[k]} {min(results[n][k]):.2f}" for k in kinds) + ")")
    if 1 in sizes and max(sizes) > 1:
        top = max(sizes)
        scale = median(results[top]["ec"]) / median(results[1]["ec"])
        print(f"elasticcluster {top} nodes / 1 node: {scale:.2f}x  (target < {TARGET_SCALING}x) "
              f"{'ok' if scale < TARGET_SCALING else 'MISSED'}")
        for k in kinds[1:]:
            other = median(results[top][k]) / median(results[1][k])
            print(f"{NAMES[k]:<14} {top} nodes / 1 node: {other:.2f}x  (for comparison)")
    if "key" in kinds:
        print("bare+host key: the same docker run plus a per-node ed25519 host key bind-mounted into "
              "/etc/ssh, i.e. the same first-boot work as elasticcluster's nodes (which get their host "
              "key from the driver and so skip ssh-keygen -A); the target compares with plain bare.")
    print(machine_note(load0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
