#!/usr/bin/env python3
"""Start time against a slow cloud: API latency and boot time, and how start scales with N.

Usage::

    .venv/bin/python bench/bench_start_latency.py [--runs N] [--sizes 1,4,16,64] [-p 10[,2,...]]
                                                  [--latency 0.05] [--boot-time 3] [--check]

The cloud is ``bench/slow_driver.py:SlowNodeDriver``, a libcloud ``NodeDriver``
of our own registered by configuration alone (``driver =
bench.slow_driver:SlowNodeDriver`` in the cloud section, with ``latency``,
``boot_time`` and ``state_dir`` passed to its constructor): every API call
takes ``--latency`` seconds, and a node runs ``--boot-time`` seconds after its
create call returned. The issue's example (0.5 s per call, 30 s boot) is
scaled down tenfold by default. No network is used: the fake cloud keeps its
instances in a JSON file, its addresses (198.18.0.0/15) are never contacted,
the SSH wait of ``start`` is stubbed by ``bench/bench_site/sitecustomize.py``
(checked on every run), and as root the whole run also happens in a private
network namespace holding only ``lo``.

For each ``-p`` value and cluster size N it runs, as whole processes,
``elasticcluster start bench --nodes 1:frontend,N-1:compute --no-setup -p P``
(timed) then ``stop bench --yes`` (timed apart), ``--runs`` times (default 3),
and prints the median start time next to the boot time, the ratio of the two,
the model of the create phase (``ceil(N/p) x latency``: the only part that
should grow with N), and the ``list_nodes`` calls per start (one per poll
round for the whole cluster, whatever N).

Start time should stay close to one boot time as N grows, until the
concurrency cap makes ``ceil(N/p) x latency`` count. What remains above the
boot time is the process start, the few calls before the creates (key pair,
image, flavor), and the poll granularity: ``wait_instances`` polls 0.5 s after
the creates, then 1.5x later each time up to every 5 s, so a node is seen
running up to one poll interval after it booted. Those intervals are scaled
by the same factor as the fake cloud's times (``--poll-scale auto``, through
``bench/bench_site``), so that the scaled-down run shows what the unscaled one
would, divided by ten; ``--poll-scale 1`` keeps the product's own intervals
(then a 3 s boot is seen at the 4.1 s poll, about 1 s late). With ``--check`` the exit status is 1
when a start exceeds ``boot + model create phase + 2.5 s``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_SITE = ROOT / "bench" / "bench_site"
MARK = "(benchmark: SSH not probed)"
SLACK = 2.5  # seconds allowed above boot + create phase for --check

CONFIG = """\
[cloud/slow]
provider = slow
driver = bench.slow_driver:SlowNodeDriver
key = bench
latency = {latency}
boot_time = {boot}
state_dir = {state}

[login/bench]
image_user = bench
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-bench
user_key_private = {key}
user_key_public = {key}.pub

[setup/slurm]
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/bench]
cloud = slow
login = bench
setup_provider = slurm
image_id = bench-image
flavor = small
frontend_nodes = 1
compute_nodes = 1
ssh_to = frontend
startup_timeout = {timeout}
"""


def make_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = folder / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private.with_suffix(".pub").write_bytes(public + b" bench@elasticcluster\n")
    return private


class Cli:
    def __init__(self, work: Path):
        self.config = work / "config"
        self.storage = work / "storage"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_SITE), str(ROOT),
                                                               self.env.get("PYTHONPATH")]))
        self.env.pop("ELASTICCLUSTER_BENCH_MOTO", None)
        self.env.pop("ELASTICCLUSTER_BENCH_POLL_SCALE", None)

    def __call__(self, *args: str, timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
        command = [sys.executable, "-m", "elasticcluster", "-c", str(self.config), "-s", str(self.storage),
                   *args]
        began = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=str(ROOT))
        return time.perf_counter() - began, proc


def fail(what: str, proc: subprocess.CompletedProcess) -> None:
    sys.exit(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


def measure(args) -> list[dict]:
    from bench import slow_driver

    rows = []
    with tempfile.TemporaryDirectory(prefix="ec-bench-latency-") as tmp:
        work = Path(tmp)
        state = work / "cloud"
        cli = Cli(work)
        if args.poll_scale != 1:
            cli.env["ELASTICCLUSTER_BENCH_POLL_SCALE"] = repr(args.poll_scale)
        cli.config.write_text(CONFIG.format(latency=args.latency, boot=args.boot_time, state=state,
                                            key=make_key(work), timeout=max(60, int(args.boot_time * 10))))
        cli.config.chmod(0o600)
        for p in args.p:
            for size in args.sizes:
                row = {"p": p, "n": size, "start": [], "stop": [], "list_nodes": [], "create_node": []}
                for run in range(args.runs):
                    slow_driver.reset(str(state))
                    elapsed, proc = cli("start", "bench", "--nodes", f"1:frontend,{size - 1}:compute",
                                        "--no-setup", "-p", str(p))
                    if proc.returncode != 0:
                        fail(f"start N={size} -p {p}", proc)
                    if MARK not in proc.stderr:
                        sys.exit("the SSH-wait stub of bench/bench_site was not loaded: stopping")
                    calls = slow_driver.calls(str(state))
                    stop_time, stopped = cli("stop", "bench", "--yes")
                    if stopped.returncode != 0:
                        fail(f"stop N={size} -p {p}", stopped)
                    with open(state / "cloud.json") as stream:
                        alive = sum(1 for i in json.load(stream)["instances"].values() if not i["terminated"])
                    if alive:
                        sys.exit(f"N={size} -p {p}: {alive} instance(s) left after stop")
                    row["start"].append(elapsed)
                    row["stop"].append(stop_time)
                    row["list_nodes"].append(calls.get("list_nodes", 0))
                    row["create_node"].append(calls.get("create_node", 0))
                    print(f"  -p {p:<3} N={size:<4} run {run + 1}: start {elapsed:6.2f}s  "
                          f"stop {stop_time:5.2f}s  "
                          f"list_nodes {row['list_nodes'][-1]}  create_node {row['create_node'][-1]}",
                          flush=True)
                rows.append(row)
        shutil.rmtree(state, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--sizes", default="1,4,16,64", help="cluster sizes (default 1,4,16,64)")
    parser.add_argument("-p", "--max-concurrent-requests", dest="p", default="10",
                        help="`start -p` values, comma-separated (default 10, the product default)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per API call (default 0.05)")
    parser.add_argument("--boot-time", type=float, default=3.0, help="seconds until a node runs (default 3)")
    parser.add_argument("--poll-scale", default="auto",
                        help="multiply the product's poll intervals (0.5 s growing to 5 s) by this; "
                             "'auto' (default): by the same factor as the times, latency / 0.5 s")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when a start exceeds boot + ceil(N/p) x latency + {SLACK} s")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.p = [int(p) for p in str(args.p).split(",")]
    args.poll_scale = args.latency / 0.5 if args.poll_scale == "auto" else float(args.poll_scale)

    namespace = None
    if os.geteuid() == 0:
        from tests.cloud import netns

        ok, why = netns.available()
        if ok:
            namespace = netns.private_network()
        else:
            print(f"note: no private network namespace ({why}); the SSH stub alone keeps the fake "
                  "addresses uncontacted", flush=True)
    else:
        print("note: not root, so no private network namespace; the SSH stub alone keeps the fake "
              "addresses uncontacted (nothing else opens a socket)", flush=True)

    print(f"slow fake cloud: {args.latency:g} s per API call, {args.boot_time:g} s boot "
          f"(the issue's 0.5 s / 30 s scaled by {args.latency / 0.5:g}); {args.runs} run(s) per size; "
          f"poll intervals x{args.poll_scale:g} ({0.5 * args.poll_scale:g} s growing to "
          f"{5 * args.poll_scale:g} s); "
          f"1 frontend + N-1 compute, --no-setup, SSH wait stubbed"
          f"{'; in a private network namespace' if namespace else ''}", flush=True)
    if namespace is not None:
        with namespace:
            rows = measure(args)
    else:
        rows = measure(args)

    print()
    print(f"start --no-setup against the slow fake cloud (latency {args.latency:g} s, "
          f"boot {args.boot_time:g} s), "
          f"median of {args.runs} run(s)")
    header = (f"{'-p':>3}  {'nodes':>5}  {'start (s)':>9}  {'boot (s)':>8}  {'start/boot':>10}  "
              f"{'start-boot (s)':>14}  {'creates: ceil(N/p)*lat (s)':>26}  {'vs N=1':>6}  "
              f"{'list_nodes/start':>16}  {'stop (s)':>8}")
    print(header)
    print("-" * len(header))
    ok = True
    for p in args.p:
        base = None
        for row in (r for r in rows if r["p"] == p):
            start = statistics.median(row["start"])
            base = base or start
            model = math.ceil(row["n"] / p) * args.latency
            if start > args.boot_time + model + SLACK:
                ok = False
            calls = sorted(set(row["list_nodes"]))
            print(f"{p:>3}  {row['n']:>5}  {start:>9.2f}  {args.boot_time:>8.2f}  "
                  f"{start / args.boot_time:>9.2f}x  "
                  f"{start - args.boot_time:>14.2f}  {model:>26.2f}  {start / base:>5.2f}x  "
                  f"{'-'.join(map(str, (calls[0], calls[-1]))) if len(calls) > 1 else calls[0]:>16}  "
                  f"{statistics.median(row['stop']):>8.2f}")
    print(f"\nstart stays within boot + ceil(N/p) x latency + {SLACK:g} s for every size: "
          f"{'yes' if ok else 'NO'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
