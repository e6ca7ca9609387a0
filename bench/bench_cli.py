#!/usr/bin/env python3
"""Start-up benchmark of the report commands, timed as whole processes.

Usage::

    .venv/bin/python bench/bench_cli.py [--runs N] [--check]

It builds a throw-away HOME holding

* ``~/.elasticcluster/config`` with 50 valid cluster templates spread over the
  ``ec2_boto``, ``openstack``, ``google`` and ``local`` clouds, and
* ``~/.elasticcluster/storage`` with 20 clusters saved through the API
  (``DiskRepository.save_or_update``),

then runs each command N times (default 15) as a separate process with its
output piped, after one untimed warm-up run, and prints the median wall time
in milliseconds and its ratio to ``python -c pass``:

* ``python -c pass``                        the floor: the interpreter alone
* ``elasticcluster list-templates`` (cold)  ELASTICCLUSTER_NO_CACHE=1: the config is read,
                                            checked and linked on every run (against the drivers'
                                            signatures and with the sections cerberus found valid
                                            kept from the warm-up run, as after an edit of a
                                            section: only that one is validated again)
* ``... (cold, sections checked afresh)``    also ELASTICCLUSTER_NO_CHECK_CACHE=1: cerberus imported
                                            and every section validated by it
* ``... (cold, drivers read afresh)``        also ELASTICCLUSTER_NO_DRIVER_CACHE=1: each driver's
                                            signature read from libcloud, every section validated
                                            (a first run ever)
* ``elasticcluster list-templates`` (warm)  the template cache is used (primed by the warm-up)
* ``elasticcluster list``                   the 20 state files are read

The target (issue 2, "Speed") is each command under 4x ``python -c pass``.
The ``elasticcluster`` entry point of the same virtualenv as the Python that
runs this script is used. With ``--check`` the exit status is 1 when a
command misses the target.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = 50
CLUSTERS = 20
TARGET = 4.0

CLOUDS = """\
[cloud/amazon]
provider = ec2_boto
ec2_url = https://ec2.us-east-1.amazonaws.com
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = bench-not-a-real-secret
ec2_region = us-east-1

[cloud/openstack]
provider = openstack
auth_url = https://keystone.example.org:5000/v3
username = bench
password = bench-not-a-real-password
project_name = bench
identity_api_version = 3

[cloud/google]
provider = google
gce_project_id = bench-project
gce_client_id = bench-client
gce_client_secret = bench-not-a-real-secret

[cloud/local]
provider = local

[login/ubuntu]
image_user = ubuntu
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/slurm]
provider = ansible
frontend_groups = slurm_master
compute_groups = slurm_clients

[setup/gridengine]
provider = ansible
frontend_groups = gridengine_master
compute_groups = gridengine_clients
"""

CLUSTER = """
[cluster/{name}]
cloud = {cloud}
login = ubuntu
setup_provider = {setup}
security_group = default
image_id = {image}
flavor = {flavor}
frontend_nodes = 1
compute_nodes = {computes}
ssh_to = frontend
"""

KIND_SECTION = """
[cluster/{name}/frontend]
flavor = {flavor}-big
"""

IMAGES = {"amazon": "ami-00000048", "openstack": "ubuntu-22.04", "google": "debian-12",
          "local": "elasticcluster/debian-node:bookworm"}


def write_config(path: Path) -> None:
    clouds = list(IMAGES)
    parts = [CLOUDS]
    for i in range(TEMPLATES):
        cloud = clouds[i % len(clouds)]
        name = f"{cloud}-{'slurm' if i % 2 else 'gridengine'}-{i:02d}"
        values = dict(name=name, cloud=cloud, setup="slurm" if i % 2 else "gridengine", image=IMAGES[cloud],
                      flavor=f"m1.size{i % 5}", computes=1 + i % 8)
        parts.append(CLUSTER.format(**values))
        if i % 3 == 0:  # a per-kind override on every third template
            parts.append(KIND_SECTION.format(**values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))
    path.chmod(0o600)


def store_clusters(storage: Path) -> None:
    from elasticcluster.cluster import Cluster
    from elasticcluster.repository import DiskRepository

    repo = DiskRepository(storage)
    for i in range(CLUSTERS):
        cluster = Cluster(f"cluster-{i:02d}", repository=repo, template="amazon-slurm-01", cloud="amazon",
                          provider="ec2_boto", ssh_to="frontend")
        cluster.add_node("frontend", "ami-00000048", "ubuntu", "m1.large", "default")
        for node in cluster.add_nodes("compute", 2 + i % 6, "ami-00000048", "ubuntu", "m1.small", "default"):
            node.instance_id = f"i-{i:04x}{len(cluster.get_all_nodes()):04x}"
            node.public_ips, node.private_ips = [f"192.0.2.{i}"], [f"10.0.{i}.1"]
            node.state = "running"
        repo.save_or_update(cluster)


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, text=True)
    return (time.perf_counter() - started) * 1000, proc


def measure(argv: list[str], env: dict[str, str], runs: int, check_output) -> float:
    _, proc = time_once(argv, env)  # warm-up (also primes the template cache), not timed
    if proc.returncode != 0 or not check_output(proc.stdout):
        sys.exit(f"benchmark command failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
    return statistics.median(time_once(argv, env)[0] for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default: 15)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a command misses the target")
    args = parser.parse_args()

    command = Path(sys.executable).parent / "elasticcluster"
    if not command.exists():
        sys.exit(f"no elasticcluster entry point next to {sys.executable}: install the package in this venv")

    with tempfile.TemporaryDirectory(prefix="elasticcluster-bench-") as tmp:
        home = Path(tmp) / "home"
        write_config(home / ".elasticcluster" / "config")
        store_clusters(home / ".elasticcluster" / "storage")
        env = {k: v for k, v in os.environ.items()
               if k not in ("ELASTICCLUSTER_NO_CACHE", "ELASTICCLUSTER_NO_DRIVER_CACHE",
                            "ELASTICCLUSTER_NO_CHECK_CACHE")}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        cold = {**env, "ELASTICCLUSTER_NO_CACHE": "1"}
        unchecked = {**cold, "ELASTICCLUSTER_NO_CHECK_CACHE": "1"}
        first = {**unchecked, "ELASTICCLUSTER_NO_DRIVER_CACHE": "1"}
        found = f"{TEMPLATES} cluster templates found."
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], env, lambda out: True),
            ("elasticcluster list-templates (cold)", [str(command), "list-templates"], cold,
             lambda out: out.startswith(found)),
            ("elasticcluster list-templates (cold, sections checked afresh)", [str(command), "list-templates"],
             unchecked, lambda out: out.startswith(found)),
            ("elasticcluster list-templates (cold, drivers read afresh)", [str(command), "list-templates"],
             first, lambda out: out.startswith(found)),
            ("elasticcluster list-templates (warm)", [str(command), "list-templates"], env,
             lambda out: out.startswith(found)),
            ("elasticcluster list", [str(command), "list"], env,
             lambda out: out.count("\nname:") == CLUSTERS),
        ]
        results = [(label, measure(argv, case_env, args.runs, ok)) for label, argv, case_env, ok in cases]

    floor = results[0][1]
    print(f"{TEMPLATES} templates, {CLUSTERS} stored clusters; median of {args.runs} runs; "
          f"target: each under {TARGET:g}x python -c pass")
    print(f"{'command':62} {'median ms':>10} {'ratio':>7}  target")
    missed = False
    for label, ms in results:
        ratio = ms / floor
        verdict = "-" if label.startswith("python") else ("ok" if ratio < TARGET else "MISSED")
        missed |= verdict == "MISSED"
        print(f"{label:62} {ms:10.1f} {ratio:6.2f}x  {verdict}")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
