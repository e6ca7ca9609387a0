"""The lifecycle scenarios through both faces, the CLI and the Python API, with the same outcome.

Each scenario runs once with the real CLI and once with a library user's script
(``data/api_face.py``: ``Configurator`` -> ``Cluster`` seed methods), against a
real EC2 API (moto's server) in a private network namespace: an interrupted
start then the same start again, a failed start's cleanup, resize,
remove-node, the stop of a half-created cluster, pause and resume, and baked
images (bake, resize from the image, stop --keep-images, a new start from them,
stop).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cloud.conftest import FAKE_SECRETS, MOTO_SITE, Run, ec2_config, with_bake_secrets
from tests.cloud.fault_proxy import Rule

API_SCRIPT = Path(__file__).resolve().parent / "data" / "api_face.py"


class Face:
    """One way of driving clusters: ``cli`` (elasticcluster ...) or ``api`` (a Python script)."""

    def __init__(self, name: str, ec):
        self.name = name
        self.ec = ec

    def argv(self, verb: str, cluster: str, *args: str) -> list[str]:
        if self.name == "api":
            return [sys.executable, str(API_SCRIPT), str(self.ec.config), str(self.ec.storage), verb, cluster,
                    *args]
        if verb == "start":
            template, *workers = args
            return self._cli("start", template, "-n", cluster, "--no-setup", *(["-p", *workers] if workers else []))
        if verb == "resize":
            add, remove = json.loads(args[0]), json.loads(args[1])
            counts = [*(["-a", ",".join(f"{n}:{k}" for k, n in add.items())] if add else []),
                      *(["-r", ",".join(f"{n}:{k}" for k, n in remove.items())] if remove else [])]
            return self._cli("resize", cluster, *counts, "--yes", "--no-setup")
        if verb == "remove-node":
            return self._cli("remove-node", cluster, args[0], "--yes", "--no-setup")
        if verb == "resume":
            return self._cli("resume", cluster)
        if verb == "bake":
            return self._cli("bake", cluster, *(word for kind in args for word in ("--kind", kind)))
        return self._cli(verb, cluster, *args, "--yes")

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "elasticcluster", "-c", str(self.ec.config), "-s", str(self.ec.storage), *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MOTO_SITE), env.get("PYTHONPATH")]))
        return env

    def __call__(self, verb: str, cluster: str, *args: str, timeout: float = 300) -> Run:
        proc = subprocess.run(self.argv(verb, cluster, *args), capture_output=True, text=True, env=self.env(),
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, verb: str, cluster: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(verb, cluster, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(), stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.fixture(params=["cli", "api"])
def face(request, ec) -> Face:
    return Face(request.param, ec)


def state(ec, name: str) -> dict:
    return json.loads((ec.storage / name / "state.json").read_text())["cluster"]


def node_names(ec, name: str) -> list[str]:
    return sorted(n["name"] for nodes in state(ec, name)["nodes"].values() for n in nodes)


def wait_for_calls(proxy, action: str, count: int, timeout: float = 30) -> None:
    """Until the cloud has seen ``count`` ``action`` calls (the command is busy creating nodes)."""
    deadline = time.monotonic() + timeout
    while proxy.counts.get(action, 0) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def recorded_ids(ec, name: str) -> set[str]:
    return {n["instance_id"] for nodes in state(ec, name)["nodes"].values() for n in nodes if n["instance_id"]}


def test_interrupted_start_then_start_again(moto, proxy, ec, ssh_key, face):
    proxy.rules.append(Rule("RunInstances", delay=0.4))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=7))
    proc = face.popen("start", "int", "slurm", "2")
    wait_for_calls(proxy, "RunInstances", 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert "start slurm -n int" in err and "stop int" in err
    alive = {i["InstanceId"] for i in moto.instances("int")}
    assert recorded_ids(ec, "int") == alive and 0 < len(alive) < 8
    proxy.rules.clear()
    result = face("start", "int", "slurm")
    assert result.returncode == 0, result.output
    if face.name == "cli":
        assert "resuming" in result.stderr
    assert len(moto.instances("int")) == 8
    assert node_names(ec, "int") == ["compute001", "compute002", "compute003", "compute004", "compute005",
                                     "compute006", "compute007", "frontend001"]
    assert recorded_ids(ec, "int") == {i["InstanceId"] for i in moto.instances("int")}
    assert {n["state"] for nodes in state(ec, "int")["nodes"].values() for n in nodes} == {"running"}


def test_a_failed_start_that_made_nothing_is_forgotten(moto, ec, ssh_key, face):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key).replace(f"image_id = {moto.image_id}",
                                                                   "image_id = ami-00000000"))
    result = face("start", "nothing", "slurm")
    assert result.returncode == 1
    assert "image 'ami-00000000' does not exist" in result.stderr and "Traceback" not in result.output
    assert moto.instances() == []
    assert not (ec.storage / "nothing").exists()


def test_a_failed_start_keeps_what_it_made_for_stop(moto, proxy, ec, ssh_key, face):
    proxy.rules.append(Rule("RunInstances", code="InstanceLimitExceeded", after=2))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=5, cluster_extra="compute_min_nodes = 3"))
    result = face("start", "quota", "slurm", "1")
    assert result.returncode == 1
    assert "too few nodes" in result.stderr and "stop quota" in result.stderr
    assert "Traceback" not in result.output
    assert recorded_ids(ec, "quota") == {i["InstanceId"] for i in moto.instances("quota")}
    assert len(moto.instances("quota")) == 2
    proxy.rules.clear()
    result = face("stop", "quota")
    assert result.returncode == 0, result.output
    assert moto.instances("quota") == []
    assert not (ec.storage / "quota").exists()


def test_resize_and_remove_node(moto, ec, ssh_key, face):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=2))
    assert face("start", "rs", "slurm").returncode == 0
    result = face("resize", "rs", '{"compute": 2}', "{}")
    assert result.returncode == 0, result.output
    assert len(moto.instances("rs")) == 5
    result = face("resize", "rs", "{}", '{"compute": 1}')
    assert result.returncode == 0, result.output
    assert node_names(ec, "rs") == ["compute001", "compute002", "compute003", "frontend001"]
    assert len(moto.instances("rs")) == 4
    known_hosts = ec.storage / "rs" / "known_hosts"
    assert "compute002" in known_hosts.read_text()
    result = face("remove-node", "rs", "compute002")
    assert result.returncode == 0, result.output
    assert node_names(ec, "rs") == ["compute001", "compute003", "frontend001"]
    assert recorded_ids(ec, "rs") == {i["InstanceId"] for i in moto.instances("rs")}
    assert "compute002" not in known_hosts.read_text() and "compute003" in known_hosts.read_text()
    # names of removed nodes are not given again
    assert face("resize", "rs", '{"compute": 1}', "{}").returncode == 0
    assert node_names(ec, "rs") == ["compute001", "compute003", "compute005", "frontend001"]


def test_stop_of_a_half_created_cluster(moto, proxy, ec, ssh_key, face):
    proxy.rules.append(Rule("RunInstances", delay=0.3))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=5))
    proc = face.popen("start", "half", "slurm", "2")
    wait_for_calls(proxy, "RunInstances", 3)
    proc.kill()
    proc.communicate()
    assert moto.instances("half"), "instances were made before the kill"
    result = face("stop", "half", "--force")
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert moto.instances("half") == []
    assert not (ec.storage / "half").exists()


def test_pause_and_resume(moto, ec, ssh_key, face):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    assert face("start", "pr", "slurm").returncode == 0
    result = face("pause", "pr")
    assert result.returncode == 0, result.output
    assert {i["State"]["Name"] for i in moto.instances("pr")} == {"stopped"}
    assert {n["state"] for nodes in state(ec, "pr")["nodes"].values() for n in nodes} == {"stopped"}
    result = face("resume", "pr")
    assert result.returncode == 0, result.output
    assert {i["State"]["Name"] for i in moto.instances("pr")} == {"running"}
    assert {n["state"] for nodes in state(ec, "pr")["nodes"].values() for n in nodes} == {"running"}
    assert face("stop", "pr").returncode == 0
    assert moto.instances("pr") == []


def test_bake_resize_keep_and_stop(moto, proxy, ec, ssh_key, fake_secrets, face):
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert face("start", "bf", "slurm").returncode == 0
    result = face("bake", "bf", "compute")
    assert result.returncode == 0, result.output
    [image] = moto.ec2.describe_images(Owners=["self"])["Images"]
    ami = image["ImageId"]
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {"elasticcluster-cluster": "bf",
                                                              "elasticcluster-kind": "compute"}
    assert result.stdout.strip() == f"compute: {ami} (from compute001)"
    assert fake_secrets.present() == FAKE_SECRETS
    result = face("resize", "bf", '{"compute": 1}', "{}")
    assert result.returncode == 0, result.output
    assert proxy.params["RunInstances"][-1]["ImageId"] == ami
    assert {n["name"]: n["image_id"] for n in state(ec, "bf")["nodes"]["compute"]} == {
        "compute001": moto.image_id, "compute002": ami}
    result = face("stop", "bf", "--keep-images")
    assert result.returncode == 0, result.output
    assert f"compute: {ami}" in result.stdout
    assert moto.instances("bf") == [] and [i["ImageId"] for i in moto.ec2.describe_images(Owners=["self"])["Images"]] == [ami]
    calls = len(proxy.params["RunInstances"])
    assert face("start", "bf", "slurm").returncode == 0
    assert sorted(p["ImageId"] for p in proxy.params["RunInstances"][calls:]) == sorted([ami, moto.image_id])
    result = face("stop", "bf")
    assert result.returncode == 0, result.output
    assert moto.ec2.describe_images(Owners=["self"])["Images"] == []


def test_the_1_0_docs_sample_code_runs(moto, ec, ssh_key):
    """Section 4.5.1's sample: BotoCloudProvider, AnsibleSetupProvider(groups), Cluster(...),
    add_node/add_nodes, start, setup, ClusterRepository.get/get_all (data/seed_45_sample.py)."""
    from tests.cloud.conftest import NOOP_PLAYBOOK, SECRET

    script = Path(__file__).resolve().parent / "data" / "seed_45_sample.py"
    env = Face("api", ec).env()
    proc = subprocess.run([sys.executable, str(script), moto.url, "AKIDEXAMPLE", SECRET, moto.image_id,
                           str(ssh_key), str(ec.storage), str(NOOP_PLAYBOOK)], capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    nodes = dict(pair.split("=") for pair in lines["nodes"].split())
    assert sorted(nodes) == ["compute001", "compute002", "frontend001"]
    assert all(ident.startswith("i-") for ident in nodes.values())
    assert lines["clusters"] == "my-cluster"
    assert proc.stdout.rstrip().endswith("stopped")
    assert SECRET not in proc.stdout + proc.stderr
    # it ran on the cloud: tagged instances, the key pair and the security group of the sample
    assert moto.instances("my-cluster") == []
    assert {i["InstanceId"] for i in moto.instances("my-cluster", alive=False)} == set(nodes.values())
    assert [k["KeyName"] for k in moto.ec2.describe_key_pairs()["KeyPairs"]] == ["ssh_key_name"]
    assert moto.ec2.describe_security_groups(GroupNames=["all_tcp_ports"])["SecurityGroups"]
    assert not (ec.storage / "my-cluster").exists()
