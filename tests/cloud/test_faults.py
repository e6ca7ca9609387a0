"""One test for each fault a hostile tester found (issue 11's twelve points), against moto.

The fault matrix (test_fault_matrix.py) runs every command against every kind of
fault; these tests pin each point down with the exact scenario that showed it.
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.cloud.conftest import SECRET, ec2_config
from tests.cloud.fault_proxy import Rule


def _state(ec, name: str) -> dict:
    return json.loads((ec.storage / name / "state.json").read_text())["cluster"]


def _recorded(ec, name: str) -> set[str]:
    return {n["instance_id"] for nodes in _state(ec, name)["nodes"].values() for n in nodes if n["instance_id"]}


def _alive(moto, name: str) -> set[str]:
    return {i["InstanceId"] for i in moto.instances(name)}


def _wait_for(proxy, action: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while proxy.counts.get(action, 0) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_1_stop_force_when_the_cloud_cannot_list_terminates_the_recorded_instances(moto, proxy, ec, ssh_key):
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=3))
    assert ec("start", "slurm").returncode == 0
    ids = _recorded(ec, "slurm")
    proxy.rules.append(Rule("DescribeInstances", code="ServiceUnavailable", status=503))
    result = ec("stop", "slurm", "--force", "--yes")
    assert "Traceback" not in result.output
    assert _alive(moto, "slurm") == set(), "the recorded instances are terminated by id"
    assert proxy.counts.get("TerminateInstances", 0) >= 1
    # the tags could not be swept: the user is told, and --yes chose to forget the cluster
    assert result.returncode == 1
    assert "could not list the cluster's instances" in result.stderr
    assert "others may carry the tag elasticcluster-cluster=slurm" in result.stderr
    assert not (ec.storage / "slurm").exists()
    # without --force the cluster is kept for a later stop
    proxy.rules.clear()
    assert ec("start", "slurm", "-n", "kept").returncode == 0
    proxy.rules.append(Rule("DescribeInstances", code="ServiceUnavailable", status=503))
    result = ec("stop", "kept", "--yes")
    assert result.returncode == 1 and "the state file keeps them" in result.stderr
    assert (ec.storage / "kept" / "state.json").exists()
    assert _alive(moto, "kept") == set()
    assert ids.isdisjoint(_recorded(ec, "kept"))


def test_2_a_transient_listing_error_does_not_abort_start(moto, proxy, ec, ssh_key):
    proxy.rules.append(Rule("DescribeInstances", code="ServiceUnavailable", status=503, times=2))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=3))
    result = ec("start", "slurm")
    assert result.returncode == 0, result.output
    assert proxy.counts["DescribeInstances"] >= 3
    assert _recorded(ec, "slurm") == _alive(moto, "slurm") and len(_alive(moto, "slurm")) == 4


def test_3_resize_killed_before_its_create_calls_reach_the_cloud(moto, proxy, ec, ssh_key):
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=2))
    assert ec("start", "slurm").returncode == 0
    before = _recorded(ec, "slurm")
    # the create calls never reach the cloud, and the command is killed meanwhile
    proxy.counts.clear()
    proxy.rules.append(Rule("RunInstances", fault="swallow", delay=5))
    proc = ec.popen("resize", "slurm", "-a", "2:compute", "--yes")
    _wait_for(proxy, "RunInstances", 1)
    proc.kill()
    proc.communicate()
    proxy.rules.clear()
    waiting = [n["name"] for n in _state(ec, "slurm")["nodes"]["compute"] if not n["instance_id"]]
    assert waiting, "the resize had recorded its nodes ahead of the create calls"
    # the next command resolves them before anything else: not on the cloud, so forgotten
    result = ec("list-nodes", "slurm", "-u", "--json")
    assert result.returncode == 0, result.output
    for name in waiting:
        assert f"{name} was never created" in result.stderr
    assert sorted(n["name"] for n in json.loads(result.stdout)["cluster"]["nodes"]) == [
        "compute001", "compute002", "frontend001"]
    assert _recorded(ec, "slurm") == before == _alive(moto, "slurm")
    # and resize counts right afterwards
    assert ec("resize", "slurm", "-a", "1:compute", "--yes").returncode == 0
    assert len(_alive(moto, "slurm")) == 4


def test_3_resize_killed_after_its_create_calls_adopts_their_instances(moto, proxy, ec, ssh_key):
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1))
    assert ec("start", "slurm").returncode == 0
    # the cloud makes the instances; the command is killed before it hears back
    proxy.counts.clear()
    proxy.rules.append(Rule("RunInstances", fault="drop", delay=3))
    proc = ec.popen("resize", "slurm", "-a", "2:compute", "--yes")
    _wait_for(proxy, "RunInstances", 2)  # both create calls sent, held by the proxy
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    time.sleep(4)  # the proxy forwards the held requests after the kill
    proxy.rules.clear()
    assert len(_alive(moto, "slurm")) == 4
    result = ec("setup", "slurm")  # the next command adopts them by tag, waits for SSH, then sets up
    assert result.returncode == 0, result.output
    assert "found its instance" in result.stderr
    assert _recorded(ec, "slurm") == _alive(moto, "slurm")
    assert all(n["extra"].get("ssh_host_key") for nodes in _state(ec, "slurm")["nodes"].values() for n in nodes)


def test_6_double_ctrl_c_says_how_many_nodes_exist(moto, proxy, ec, ssh_key):
    proxy.rules.append(Rule("RunInstances", delay=0.6))
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=9))
    proc = ec.popen("start", "slurm", "-p", "10")
    _wait_for(proxy, "RunInstances", 10)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # leave the calls in flight to the next command
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    match = re.search(r"interrupted: (\d+) node\(s\) of cluster 'slurm' exist and are recorded", err)
    assert match, err
    time.sleep(1)  # the calls in flight reach moto
    recorded = _recorded(ec, "slurm")
    assert int(match.group(1)) == len(recorded)
    unanswered = len(_alive(moto, "slurm")) - len(recorded)
    if unanswered:
        assert f"{unanswered} more create call(s) had no answer yet" in err
    proxy.rules.clear()
    result = ec("start", "slurm")
    assert result.returncode == 0, result.output
    assert _recorded(ec, "slurm") == _alive(moto, "slurm") and len(_alive(moto, "slurm")) == 10


@pytest.mark.parametrize("argv, says", [
    (["start", "slurm", "-n", "../../tmp/evil"], "invalid cluster name '../../tmp/evil'"),
    (["start", "slurm", "-n", "a/b"], "invalid cluster name 'a/b'"),
    (["start", "slurm", "-n", ".."], "invalid cluster name '..'"),
    (["start", "slurm", "-n", "a b"], "invalid cluster name 'a b'"),
    (["start", "slurm", "-n", "x" * 300], "invalid cluster name"),
    (["start", "slurm", "-n", "grüezi"], "invalid cluster name 'grüezi'"),
    (["start", "slurm", "-n", ""], "invalid cluster name ''"),
    (["start", "slurm", "--nodes", "0:compute,0:frontend"], "has no nodes to start"),
    (["start", "slurm", "--nodes", "1000000000:compute"], "a cluster holds at most 10000 nodes"),
    (["list-nodes", "../x"], "invalid cluster name '../x'"),
    (["stop", "a/b", "--yes"], "invalid cluster name 'a/b'"),
])
def test_7_bad_input_is_exit_2_with_one_message(moto, ec, ssh_key, argv, says):
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    result = ec(*argv)
    assert result.returncode == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output
    assert "unexpected error" not in result.stderr
    assert moto.instances() == []
    assert not ec.storage.exists() or not [p for p in ec.storage.iterdir() if p.name != ".locks"]


def test_7_a_port_that_is_not_a_number_is_a_configuration_error(moto, ec, ssh_key):
    ec.write(ec2_config("http://127.0.0.1:notaport", moto.image_id, ssh_key, compute=1))
    for argv in (["list-templates"], ["start", "slurm"]):
        result = ec(*argv)
        assert result.returncode == 2, result.output
        assert "ec2_url" in result.stderr and "does not have the expected form" in result.stderr
        assert "unexpected error" not in result.stderr


def test_12_an_instance_the_cloud_no_longer_knows_counts_as_terminated(moto, ec, ssh_key):
    """moto answers TerminateInstances of an unknown id with namespaced XML that libcloud
    cannot read (an empty message): the instance is looked up, and it is gone."""
    ec.write(ec2_config(moto.url, moto.image_id, ssh_key, compute=1))
    assert ec("start", "slurm").returncode == 0
    path = ec.storage / "slurm" / "state.json"
    data = json.loads(path.read_text())
    data["cluster"]["nodes"]["compute"][0]["instance_id"] = "i-0123456789abcdef0"  # never existed
    path.write_text(json.dumps(data))
    moto.ec2.terminate_instances(InstanceIds=[i for i in _alive(moto, "slurm")])
    result = ec("stop", "slurm", "--yes")
    assert result.returncode == 0, result.output
    assert not (ec.storage / "slurm").exists()


def test_12_an_error_libcloud_cannot_read_is_described_by_its_status(moto, proxy, ec, ssh_key):
    ec.write(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1))
    assert ec("start", "slurm").returncode == 0
    proxy.rules.append(Rule("TerminateInstances", fault="garbage"))
    proxy.rules.append(Rule("DescribeInstances", fault="garbage", after=1))
    result = ec("stop", "slurm", "--yes")
    assert result.returncode == 1
    assert "Traceback" not in result.output and SECRET not in result.output
    assert re.search(r"terminating i-\w+: \S+", result.stderr), result.stderr
    assert "the state file keeps them" in result.stderr
    proxy.rules.clear()
    assert ec("stop", "slurm", "--yes").returncode == 0
    assert _alive(moto, "slurm") == set()
