"""The node lifecycle against a real EC2 API (moto's server), through the real CLI.

(Interrupted and failed starts are tested through the CLI and the API alike in
test_both_faces.py.)

Every test here runs in a private network namespace (fixture ``private_net``):
moto's fake instance addresses belong to other people, and nothing may reach them.
"""
from __future__ import annotations

import json
import random
import time

import pytest

from tests.cloud.conftest import SECRET, ec2_config
from tests.cloud.fault_proxy import Rule


def _state(ec, name: str) -> dict:
    return json.loads((ec.storage / name / "state.json").read_text())["cluster"]


def _node_names(state: dict) -> list[str]:
    return sorted(n["name"] for nodes in state["nodes"].values() for n in nodes)


def test_full_lifecycle(moto, ec, ssh_key):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key))
    result = ec("start", "slurm")
    assert result.returncode == 0, result.output
    assert "Frontend node:     frontend001" in result.stdout
    assert "accepts SSH" in result.stderr and "--no-setup" in result.stderr
    alive = moto.instances("slurm")
    assert len(alive) == 3
    assert {i["State"]["Name"] for i in alive} == {"running"}
    tags = {t["Key"]: t["Value"] for t in alive[0]["Tags"]}
    assert tags["elasticcluster-cluster"] == "slurm"
    assert tags["elasticcluster-node"] in ("frontend001", "compute001", "compute002")
    # key pair imported and security group made, with SSH open
    assert [k["KeyName"] for k in moto.ec2.describe_key_pairs()["KeyPairs"]] == ["elasticcluster-test"]
    group = moto.ec2.describe_security_groups(GroupNames=["elasticcluster-test"])["SecurityGroups"][0]
    assert any(p.get("FromPort") == 22 and p.get("ToPort") == 22 for p in group["IpPermissions"])
    state = _state(ec, "slurm")
    assert _node_names(state) == ["compute001", "compute002", "frontend001"]
    ids = {n["instance_id"] for nodes in state["nodes"].values() for n in nodes}
    assert ids == {i["InstanceId"] for i in alive}
    assert oct((ec.storage / "slurm" / "state.json").stat().st_mode & 0o777) == "0o600"

    # list-nodes -u sees a node stopped behind our back
    victim = state["nodes"]["compute"][0]["instance_id"]
    moto.ec2.stop_instances(InstanceIds=[victim])
    listed = json.loads(ec("list-nodes", "slurm", "-u", "--json").stdout)["cluster"]["nodes"]
    assert {n["instance_id"]: n["state"] for n in listed}[victim] == "stopped"
    moto.ec2.start_instances(InstanceIds=[victim])

    result = ec("resize", "slurm", "-a", "2:compute", "--yes")
    assert result.returncode == 0, result.output
    assert len(moto.instances("slurm")) == 5
    result = ec("resize", "slurm", "-r", "1:compute", "--yes")
    assert result.returncode == 0, result.output
    assert len(moto.instances("slurm")) == 4
    assert _node_names(_state(ec, "slurm")) == ["compute001", "compute002", "compute003", "frontend001"]
    # names of removed nodes are not given again
    assert ec("resize", "slurm", "-a", "1:compute", "--yes").returncode == 0
    assert "compute005" in _node_names(_state(ec, "slurm"))

    assert ec("pause", "slurm", "--yes").returncode == 0
    assert {i["State"]["Name"] for i in moto.instances("slurm")} == {"stopped"}
    assert ec("resume", "slurm").returncode == 0
    assert {i["State"]["Name"] for i in moto.instances("slurm")} == {"running"}

    # remove-node forgets the node's host key (a later node may get its address);
    # the setup it runs afterwards is tested on local nodes (test_playbook_slurm)
    known_hosts = ec.storage / "slurm" / "known_hosts"
    assert "compute002" in known_hosts.read_text()
    result = ec("remove-node", "slurm", "compute002", "--yes")
    assert result.returncode == 0, result.output
    assert "compute002" not in _node_names(_state(ec, "slurm"))
    assert len(moto.instances("slurm")) == 4
    assert "compute002" not in known_hosts.read_text() and "compute003" in known_hosts.read_text()

    result = ec("stop", "slurm", "--yes", "--wait")
    assert result.returncode == 0, result.output
    assert moto.instances("slurm") == []
    assert not (ec.storage / "slurm").exists()
    assert SECRET not in result.output


def test_stop_asks_for_confirmation(moto, ec, ssh_key):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    assert ec("start", "slurm").returncode == 0
    result = ec("stop", "slurm")  # no terminal on stdin, no --yes
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert len(moto.instances("slurm")) == 2


def test_key_pair_of_the_same_name_with_another_key_is_refused(moto, ec, ssh_key, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    moto.ec2.import_key_pair(KeyName="elasticcluster-test", PublicKeyMaterial=other.encode())
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key))
    result = ec("start", "slurm")
    assert result.returncode == 1
    assert "already exists on the cloud with another key" in result.stderr
    assert "Traceback" not in result.output
    assert moto.instances() == []
    assert not (ec.storage / "slurm").exists()  # nothing created, nothing to remember


def test_the_same_key_already_imported_is_used(moto, ec, ssh_key):
    moto.ec2.import_key_pair(KeyName="elasticcluster-test",
                             PublicKeyMaterial=ssh_key.with_suffix(".pub").read_bytes())
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    result = ec("start", "slurm")
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("change, expected", [
    (("image_id = {image}", "image_id = ami-00000000"), "image 'ami-00000000' does not exist"),
    (("flavor = t2.micro", "flavor = t2.mikro"), "flavor 't2.mikro' does not exist on this cloud; close matches: t2.micro"),
])
def test_unknown_image_or_flavor(moto, ec, ssh_key, change, expected):
    text = ec2_config(moto.url, moto.image_id, ssh_key)
    ec.write(text.replace(change[0].format(image=moto.image_id), change[1]))
    result = ec("start", "slurm")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert moto.instances() == []


def test_bad_credentials(moto, proxy, ec, ssh_key):
    proxy.rules.append(Rule("*", code="AuthFailure", status=401))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key))
    result = ec("start", "slurm")
    assert result.returncode == 1
    assert "AuthFailure" in result.stderr
    assert "Traceback" not in result.output
    assert SECRET not in ec("-vvv", "start", "slurm").output


def test_transient_errors_are_retried(moto, proxy, ec, ssh_key):
    proxy.rules.append(Rule("RunInstances", code="RequestLimitExceeded", status=503, times=2))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key))
    result = ec("start", "slurm", "-p", "1")
    assert result.returncode == 0, result.output
    assert proxy.counts["RunInstances"] == 3 + 2
    assert len(moto.instances("slurm")) == 3


def test_min_nodes_lets_start_go_on_after_a_quota_error(moto, proxy, ec, ssh_key):
    proxy.rules.append(Rule("RunInstances", code="InstanceLimitExceeded", after=4))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=5,
                        cluster_extra="compute_min_nodes = 3"))
    result = ec("start", "slurm", "-p", "1")
    assert result.returncode == 0, result.output
    assert "InstanceLimitExceeded" in result.stderr
    state = _state(ec, "slurm")
    assert len(state["nodes"]["compute"]) == 3
    assert len(moto.instances("slurm")) == 4


def test_stop_terminates_instances_the_state_file_lost(moto, ec, ssh_key):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=3))
    assert ec("start", "slurm").returncode == 0
    path = ec.storage / "slurm" / "state.json"
    data = json.loads(path.read_text())
    data["cluster"]["nodes"]["compute"] = data["cluster"]["nodes"]["compute"][:1]
    path.write_text(json.dumps(data))
    result = ec("stop", "slurm", "--yes")
    assert result.returncode == 0, result.output
    assert moto.instances("slurm") == []


def test_two_clusters_do_not_touch_each_other(moto, ec, ssh_key):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    assert ec("start", "slurm", "-n", "one").returncode == 0
    assert ec("start", "slurm", "-n", "two").returncode == 0
    assert ec("stop", "one", "--yes").returncode == 0
    assert moto.instances("one") == []
    assert len(moto.instances("two")) == 2


def test_ex_keys_go_to_create_node_and_unknown_ones_are_refused(moto, ec, ssh_key):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1,
                        cluster_extra="ex_ebs_optimized = yes\n"))
    assert ec("start", "slurm").returncode == 0
    ec("stop", "slurm", "--yes")
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1,
                        cluster_extra="ex_no_such_thing = 3\n"))
    result = ec("start", "slurm")
    assert result.returncode == 2
    # refused when the configuration loads, where it is written, listing what may be set instead
    assert "[cluster/slurm] ex_no_such_thing: not a parameter of EC2NodeDriver.create_node" in result.stderr
    assert "ex_ebs_optimized" in result.stderr
    assert moto.instances() == []


def test_sigkill_at_any_point_leaves_nothing_that_stop_cannot_find(moto, proxy, ec, ssh_key, capsys):
    """Kill `start` with SIGKILL at 20 points along its run; `stop --force` must leave 0 instances."""
    proxy.rules.append(Rule("RunInstances", delay=0.15))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=5))
    began = time.monotonic()
    assert ec("start", "slurm", "-n", "timing", "-p", "2").returncode == 0
    duration = time.monotonic() - began
    assert ec("stop", "timing", "--yes").returncode == 0
    rng = random.Random(20261129)
    points = sorted(rng.uniform(0.05, duration) for _ in range(20))
    leaked = {}
    for number, point in enumerate(points):
        name = f"kill{number}"
        proc = ec.popen("start", "slurm", "-n", name, "-p", "2")
        time.sleep(point)
        proc.kill()
        proc.communicate()
        if (ec.storage / name / "state.json").exists():
            result = ec("stop", name, "--force", "--yes")
            assert result.returncode == 0, result.output
            assert "Traceback" not in result.output
        leaked[name] = len(moto.instances(name))
    with capsys.disabled():  # the report belongs in the test run's output
        print(f"\nSIGKILL at {len(points)} points (s): {', '.join(f'{p:.2f}' for p in points)}; "
              f"a full start takes {duration:.2f}s")
        print(f"leaked instances after stop --force: {sum(leaked.values())}")
    assert sum(leaked.values()) == 0, leaked


def test_python_api_start_and_stop(moto, ssh_key, tmp_path, monkeypatch):
    """The seed's API (4.5.1): Configurator -> create_cluster -> start -> stop, in this process."""
    import libcloud.compute.drivers.ec2 as ec2

    monkeypatch.setattr(ec2, "NAMESPACE", ec2.NAMESPACE.rstrip("/"))  # moto's namespace (test-only)
    from elasticcluster import Configurator

    config = tmp_path / "api.conf"
    config.write_text(ec2_config(moto.url, moto.image_id, ssh_key, compute=2))
    config.chmod(0o600)
    conf = Configurator.fromConfig(config, tmp_path / "api-storage")
    cluster = conf.create_cluster("slurm", name="api")
    cluster.start()
    assert len(moto.instances("api")) == 3
    stored = conf.load_cluster("api")
    assert {n.state for n in stored.get_all_nodes()} == {"running"}
    assert all(n.extra.get("ssh_host_key") for n in stored.get_all_nodes())
    stored.stop()
    assert moto.instances("api") == []
    assert not (tmp_path / "api-storage" / "api.json").exists()


def test_clusters_larger_than_one_page_of_listing(moto, ec, ssh_key):
    """moto lists instances in pages of 100: nodes beyond the first page are looked up by id."""
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=110))
    result = ec("start", "slurm", "-p", "20", timeout=600)
    assert result.returncode == 0, result.output[-2000:]
    state = _state(ec, "slurm")
    assert len(_node_names(state)) == 111
    assert {n["state"] for nodes in state["nodes"].values() for n in nodes} == {"running"}
    assert len(moto.instances("slurm")) == 111
    result = ec("stop", "slurm", "--yes")
    assert result.returncode == 0, result.output[-2000:]
    assert moto.instances("slurm") == []
