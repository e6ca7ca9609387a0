"""Helpers shared by the local-cloud benchmarks (bench_local_start, bench_setup, bench_ssh_notice).

Every cluster these benchmarks make is named ``bench-...``; every container and
network they make outside elasticcluster carries the label ``BENCH_LABEL``.
Cleanup only ever touches those: other people may run containers on the same
engine at the same time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ELASTICCLUSTER = str(VENV_BIN / "elasticcluster") if (VENV_BIN / "elasticcluster").exists() \
    else shutil.which("elasticcluster") or "elasticcluster"
IMAGE = "elasticcluster/debian-node:bookworm"
BENCH_LABEL = "elasticcluster.bench"
#: the labels and network naming of drivers/local.py
CLUSTER_LABEL = "elasticcluster.cluster"
NETWORK_PREFIX = "elasticcluster"


def sigterm_as_exit() -> None:
    """SIGTERM runs the ``finally`` blocks (cleanup) like Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def clean_env(home: str | None = None) -> dict[str, str]:
    """os.environ without any ANSIBLE_* variable (and with HOME=home when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.pop("ELASTICCLUSTER_NO_CACHE", None)
    if home is not None:
        env["HOME"] = home
    return env


def fresh_home(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"{prefix}-home-")


def ec(home: str, *args: str, timeout: float = 600, check: bool = True,
       env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the elasticcluster CLI with HOME=home; output captured."""
    proc = subprocess.run([ELASTICCLUSTER, *args], env=env or clean_env(home), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"elasticcluster {' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def node_ips(home: str, name: str) -> dict[str, str]:
    """node name -> IP, from ``list-nodes NAME --json``."""
    data = json.loads(ec(home, "list-nodes", name, "--json", timeout=60).stdout)
    return {n["name"]: n.get("preferred_ip") or (n.get("public_ips") or n.get("private_ips") or [None])[0]
            for n in data["cluster"]["nodes"]}


def ssh_banner(ip: str, port: int = 22, timeout: float = 1.0) -> bytes | None:
    """The SSH identification line of ip:port, or None if there is none yet."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return data.strip() if data.startswith(b"SSH-") else None


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def containers_of_cluster(name: str) -> list[str]:
    out = docker("ps", "-aq", "--filter", f"label={CLUSTER_LABEL}={name}", check=False)
    return out.split()


def remove_cluster(home: str, name: str) -> None:
    """``stop NAME --yes`` (then ``--force``), then remove by label whatever is left of it."""
    if not name.startswith("bench-"):
        raise ValueError(f"refusing to remove cluster {name!r}: not a benchmark cluster")
    storage = Path(home) / ".elasticcluster" / "storage"
    if (storage / name / "state.json").exists():
        try:
            proc = ec(home, "stop", name, "--yes", timeout=180, check=False)
            if proc.returncode != 0:
                ec(home, "stop", name, "--yes", "--force", timeout=180, check=False)
        except subprocess.TimeoutExpired:
            pass
    left = containers_of_cluster(name)
    if left:
        docker("rm", "-f", "-v", *left, check=False)
    network = f"{NETWORK_PREFIX}-{name}"
    if docker("network", "ls", "-q", "--filter", f"name=^{network}$", check=False).strip():
        docker("network", "rm", network, check=False)


def remove_labelled(value: str) -> None:
    """Remove the containers, then the networks, labelled BENCH_LABEL=value."""
    left = docker("ps", "-aq", "--filter", f"label={BENCH_LABEL}={value}", check=False).split()
    if left:
        docker("rm", "-f", "-v", *left, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label={BENCH_LABEL}={value}", check=False).split()
    if nets:
        docker("network", "rm", *nets, check=False)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def close_ssh_masters(home: str) -> None:
    """End the OpenSSH ControlPersist masters Ansible left under HOME/.ansible/cp (cold start)."""
    folder = Path(home) / ".ansible" / "cp"
    if not folder.is_dir():
        return
    for sock in folder.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-dummy"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10, check=False)
    deadline = time.monotonic() + 5
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)


def docker_ok() -> bool:
    try:
        docker("image", "inspect", IMAGE, timeout=30)
        return True
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        print(f"cannot use the Docker engine or the image {IMAGE}: {err}", file=sys.stderr)
        return False


def machine_note(load_at_start: tuple[float, float, float]) -> str:
    """CPUs and load averages: other work on the machine moves these figures a lot."""
    now = os.getloadavg()
    return (f"machine: {os.cpu_count()} CPUs; load average (1 min) {load_at_start[0]:.1f} at the start, "
            f"{now[0]:.1f} at the end (other work on the machine makes the figures noisy: compare "
            "the interleaved columns, not runs taken at different times)")
