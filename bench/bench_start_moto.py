#!/usr/bin/env python3
"""Start-up benchmark of ``elasticcluster start --no-setup`` against moto's EC2 server.

Usage (as root: it makes a private network namespace)::

    .venv/bin/python bench/bench_start_moto.py [--runs N] [--sizes 1,16,64,256] [-p N]
                                               [--ec2-unpaged] [--startup-timeout S] [--check]

Everything runs inside a fresh network namespace holding only ``lo``
(``tests/cloud/netns.py``): moto gives its fake instances real public
addresses that belong to other people, and no packet may leave the machine.
In there the script starts ``python -m moto.server`` on 127.0.0.1 and the
test suite's ``FaultProxy`` in front of it (it only counts the requests per
EC2 ``Action``; it injects nothing), and for each cluster size N runs, as a
whole process with its output piped::

    python -m elasticcluster -c CONFIG -s STORAGE start bench --nodes 1:frontend,N-1:compute --no-setup

(one frontend plus N-1 compute nodes; ``-p`` is passed only when given, else
the product default applies) timing its wall time, then ``stop bench --yes``
(timed separately; not part of the figures the issue names), then counts the
instances still alive in moto (through boto3, every page: must be 0). moto is
reset before every run.

The CLI processes get ``bench/bench_site`` on their ``PYTHONPATH``: its
``sitecustomize`` loads the moto test fixture's fix of libcloud's EC2 XML
namespace (``tests/cloud/moto_site``) and replaces the SSH wait by "ready at
once", since moto's addresses must never be contacted. The times are those
of the cloud part of ``start``: key pair, security group, image and flavor,
the create calls, the wait until every node runs.

moto's ``DescribeInstances`` returns at most 100 reservations when the
request gives no ``MaxResults`` (real EC2 returns them all) and libcloud's
EC2 ``list_nodes`` does not follow ``NextToken``. ``--ec2-unpaged`` runs moto
with that default lifted (as real EC2 answers); without it, clusters above
100 nodes show what the product does with a truncated listing. A start that
fails, or ends with fewer nodes than asked, is reported as such, and the
remaining runs of that size are skipped. ``startup_timeout`` is set to
``--startup-timeout`` (default 120 s) to bound such a run.

It prints, per size, the median start time of ``--runs`` runs (default 3),
the time per node, the ratio to the 16-node median, the median stop time, and
the number of ``DescribeInstances`` (``list_nodes``) and ``RunInstances``
calls per start, the CPU time of the CLI process and of moto's server during
the start (steadier than wall time on a busy machine: moto's server handles
the requests on one core, so its CPU time is a floor for the start), and
whether the 256-node start takes under 3x the 16-node one (issue 3, "Speed").
``DescribeInstances`` per start must stay a handful (one listing per poll
round for the whole cluster), not grow with N.
With ``--check`` the exit status is 1 when the target is missed or a run fails.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MOTO_SITE = ROOT / "tests" / "cloud" / "moto_site"
BENCH_SITE = ROOT / "bench" / "bench_site"
MARK = "(benchmark: SSH not probed)"
SECRET = "bench-not-a-real-secret-0123456789abcdef"
TARGET = 3.0  # the 256-node start under 3x the 16-node one
DEFAULT_P = 10  # the product's default (thread_pool_max_size) when -p is not given

CONFIG = """\
[cloud/moto]
provider = ec2_boto
ec2_url = {endpoint}
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = {secret}
ec2_region = us-east-1

[login/ubuntu]
image_user = ubuntu
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-bench
user_key_private = {key}
user_key_public = {key}.pub

[setup/slurm]
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/bench]
cloud = moto
login = ubuntu
setup_provider = slurm
image_id = {image}
flavor = t2.micro
security_group = elasticcluster-bench
frontend_nodes = 1
compute_nodes = 1
ssh_to = frontend
startup_timeout = {startup_timeout}
"""

#: run moto's server with DescribeInstances unpaged when no MaxResults is given, as real EC2 does
UNPAGED_MOTO = """\
import runpy, sys
from moto.ec2.responses.instances import InstanceResponse
_get_param = InstanceResponse._get_param
def _unpaged(self, name, *args, **kwargs):
    if name == "MaxResults":
        return _get_param(self, name) or 10**9
    return _get_param(self, name, *args, **kwargs)
InstanceResponse._get_param = _unpaged
sys.argv[0] = "moto.server"
runpy.run_module("moto.server", run_name="__main__", alter_sys=True)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(unpaged: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    head = ["-c", UNPAGED_MOTO] if unpaged else ["-m", "moto.server"]
    proc = subprocess.Popen([sys.executable, *head, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit("moto server did not start")
            time.sleep(0.1)


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST")).read()


def ec2_client(url: str):
    import boto3

    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=SECRET)


def image_id(url: str) -> str:
    return ec2_client(url).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def alive_instances(url: str) -> list[str]:
    """Ids of the instances not terminated, every page (moto pages at 100 reservations)."""
    pages = ec2_client(url).get_paginator("describe_instances").paginate()
    return [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]


class Cli:
    def __init__(self, work: Path):
        self.config = work / "config"
        self.storage = work / "storage"
        self.env = dict(os.environ)
        # bench_site's sitecustomize loads moto_site's (one sitecustomize per process) and stubs the SSH wait
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_SITE), str(MOTO_SITE), str(ROOT),
                                                               self.env.get("PYTHONPATH")]))
        self.env["ELASTICCLUSTER_BENCH_MOTO"] = "1"
        self.env.pop("ELASTICCLUSTER_NO_CACHE", None)

    def __call__(self, *args: str, timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
        command = [sys.executable, "-m", "elasticcluster", "-c", str(self.config), "-s", str(self.storage),
                   *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=str(ROOT))
        elapsed = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI process only: moto still runs
        proc.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return elapsed, proc

    def nodes_in_state(self, name: str = "bench") -> int | None:
        try:
            state = json.loads((self.storage / name / "state.json").read_text())["cluster"]
        except (OSError, ValueError, KeyError):
            return None
        return sum(len(nodes) for nodes in state["nodes"].values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (moto's server)."""
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"exit status {proc.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--sizes", default="1,16,64,256", help="cluster sizes (default 1,16,64,256)")
    parser.add_argument("-p", "--max-concurrent-requests", type=int, default=None,
                        help=f"passed to `start -p` (default: not passed; the product default is "
                             f"{DEFAULT_P})")
    parser.add_argument("--ec2-unpaged", action="store_true",
                        help="moto answers DescribeInstances without MaxResults unpaged, as real EC2 does "
                             "(default: moto's own 100-reservation pages)")
    parser.add_argument("--startup-timeout", type=int, default=120,
                        help="startup_timeout of the benchmark's template (default 120 s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the 3x target is missed")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    if os.geteuid() != 0:
        sys.exit("bench_start_moto.py must run as root: it makes a private network namespace "
                 "(unshare) so that nothing sent to moto's fake public addresses can leave the machine")
    from tests.cloud import netns
    from tests.cloud.fault_proxy import FaultProxy

    ok, why = netns.available()
    if not ok:
        sys.exit(f"cannot make a private network namespace: {why}")

    results: dict[int, dict] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ec-bench-moto-") as tmp, netns.private_network():
        work = Path(tmp)
        key = make_key(work)
        moto, moto_url = start_moto(args.ec2_unpaged)
        proxy = FaultProxy(moto_url)
        try:
            reset_moto(moto_url)
            cli = Cli(work)
            cli.config.write_text(CONFIG.format(endpoint=proxy.url, secret=SECRET, key=key,
                                                image=image_id(moto_url),
                                                startup_timeout=args.startup_timeout))
            cli.config.chmod(0o600)
            p_args = ["-p", str(args.max_concurrent_requests)] if args.max_concurrent_requests else []
            paging = ("unpaged DescribeInstances, as real EC2" if args.ec2_unpaged
                      else "stock: DescribeInstances pages of 100")
            print(f"moto {_version('moto')} ({paging}), "
                  f"apache-libcloud {_version('apache-libcloud')}, {os.cpu_count()} CPU(s); "
                  f"-p {args.max_concurrent_requests or f'{DEFAULT_P} (default)'}; "
                  f"{args.runs} run(s) per size; 1 frontend + N-1 compute, --no-setup, SSH wait stubbed; "
                  f"startup_timeout {args.startup_timeout}s",
                  flush=True)
            for size in sizes:
                row = results.setdefault(size, {"start": [], "stop": [], "describe": [], "run": [],
                                                "cli_cpu": [], "moto_cpu": [], "failed": None})
                for run in range(args.runs):
                    reset_moto(moto_url)
                    with proxy._lock:
                        proxy.counts.clear()
                    moto_cpu = cpu_seconds(moto.pid)
                    elapsed, proc = cli("start", "bench", "--nodes", f"1:frontend,{size - 1}:compute",
                                        "--no-setup", *p_args)
                    moto_cpu = cpu_seconds(moto.pid) - moto_cpu
                    with proxy._lock:
                        counts = dict(proxy.counts)
                    nodes = cli.nodes_in_state()
                    if proc.returncode == 0 and MARK not in proc.stderr:
                        sys.exit("the SSH-wait stub of bench/bench_site was not loaded: stopping")
                    failure = None
                    if proc.returncode != 0:
                        failure = f"start failed after {elapsed:.0f}s: {last_line(proc)}"
                    elif nodes != size:
                        failure = f"start took {elapsed:.0f}s and ended with {nodes} of {size} nodes"
                    stop_time, stopped = cli("stop", "bench", "--yes") if nodes is not None else (0.0, None)
                    if stopped is not None and stopped.returncode != 0:
                        problems.append(f"N={size} run {run + 1}: stop failed: {last_line(stopped)}")
                        cli("stop", "bench", "--yes", "--force")
                    leaked = alive_instances(moto_url)
                    print(f"  N={size:<4} run {run + 1}: start {elapsed:7.2f}s (exit {proc.returncode}, "
                          f"{nodes} nodes in state)  stop {stop_time:6.2f}s  "
                          f"DescribeInstances {counts.get('DescribeInstances', 0)}  "
                          f"RunInstances {counts.get('RunInstances', 0)}  "
                          f"CPU: CLI {proc.cpu:.2f}s moto {moto_cpu:.2f}s  "
                          f"alive after stop {len(leaked)}",
                          flush=True)
                    if leaked:
                        problems.append(f"N={size} run {run + 1}: {len(leaked)} instance(s) still alive "
                                        "in moto "
                                        "after `stop --yes`")
                        ec2_client(moto_url).terminate_instances(InstanceIds=leaked)
                    if failure:
                        row["failed"] = failure
                        problems.append(f"N={size} run {run + 1}: {failure}")
                        print(f"  N={size}: {failure}; skipping the other runs of this size", flush=True)
                        break
                    row["start"].append(elapsed)
                    row["stop"].append(stop_time)
                    row["describe"].append(counts.get("DescribeInstances", 0))
                    row["run"].append(counts.get("RunInstances", 0))
                    row["cli_cpu"].append(proc.cpu)
                    row["moto_cpu"].append(moto_cpu)
        finally:
            proxy.close()
            moto.terminate()
            moto.wait(timeout=10)

    print()
    print_table(results, args.runs)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    verdict_ok = True
    if 16 in results and 256 in results:
        if results[16]["failed"] or results[256]["failed"]:
            print("\n256-node start vs 16-node start: no figure (a start failed): "
                  f"target of {TARGET:.0f}x missed")
            verdict_ok = False
        else:
            ratio = statistics.median(results[256]["start"]) / statistics.median(results[16]["start"])
            verdict_ok = ratio < TARGET
            print(f"\n256-node start / 16-node start = {ratio:.2f}x: "
                  f"{'under' if verdict_ok else 'NOT under'} the {TARGET:.0f}x target")
    if args.check and (not verdict_ok or problems):
        return 1
    return 0


def print_table(results: dict[int, dict], runs: int) -> None:
    base = statistics.median(results[16]["start"]) if 16 in results and results[16]["start"] else None
    header = (f"{'nodes':>5}  {'start median (s)':>16}  {'per node (s)':>12}  {'vs 16 nodes':>11}  "
              f"{'stop median (s)':>15}  {'DescribeInstances/start':>23}  {'RunInstances/start':>18}  "
              f"{'CLI CPU (s)':>11}  {'moto CPU (s)':>12}")
    print(f"start --no-setup against moto, median of {runs} run(s)")
    print(header)
    print("-" * len(header))
    for size, row in sorted(results.items()):
        if not row["start"]:
            print(f"{size:>5}  {'FAILED':>16}  ({row['failed']})")
            continue
        start = statistics.median(row["start"])
        ratio = f"{start / base:.2f}x" if base else "-"
        print(f"{size:>5}  {start:>16.2f}  {start / size:>12.3f}  {ratio:>11}  "
              f"{statistics.median(row['stop']):>15.2f}  {_span(row['describe']):>23}  "
              f"{_span(row['run']):>18}  "
              f"{statistics.median(row['cli_cpu']):>11.2f}  {statistics.median(row['moto_cpu']):>12.2f}")


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
