"""Baked images on a real EC2 API (moto's server), through the real CLI (issue 13).

CreateImage without a reboot, the AMI tagged with its cluster and kind,
RunInstances of a resize with that AMI, DeregisterImage and DeleteSnapshot at
``stop``, ``stop --keep-images`` and a new start booting from what it kept,
``bake_after_setup``, and the node's secrets put back when making the image
fails or is interrupted. (The same bake, resize and stop through the Python API:
test_both_faces.py.)

The "nodes" are this machine's own sshd (see conftest): the setup section's
``bake_secrets`` points the bake at stand-in files of a temporary folder
(fixture ``fake_secrets``), never at this machine's host keys.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.cloud.conftest import FAKE_SECRETS, SECRET, ec2_config, with_bake_secrets
from tests.cloud.fault_proxy import Rule

STAGE = Path("/run/elasticcluster-bake")


def state(ec, name: str) -> dict:
    return json.loads((ec.storage / name / "state.json").read_text())["cluster"]


def own_images(moto) -> dict[str, dict]:
    return {i["ImageId"]: i for i in moto.ec2.describe_images(Owners=["self"])["Images"]}


def snapshot_ids(moto) -> set[str]:
    return {s["SnapshotId"] for s in moto.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def wait_for_calls(proxy, action: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while proxy.counts.get(action, 0) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.counts.get(action, 0) >= count, f"no {action} call within {timeout}s"


def no_secret_anywhere(ec, *outputs: str) -> None:
    for text in outputs:
        assert SECRET not in text and "PRIVATE HOST KEY" not in text and "MUNGE KEY" not in text
    for path in ec.storage.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert SECRET not in content and "PRIVATE HOST KEY" not in content, path


def test_bake_resize_and_stop_on_ec2(moto, proxy, ec, ssh_key, fake_secrets):
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert ec("start", "slurm", "-n", "bk").returncode == 0
    snapshots_before = snapshot_ids(moto)
    result = ec("bake", "bk")
    assert result.returncode == 0, result.output
    images = own_images(moto)
    assert len(images) == 2
    assert "could not tag" not in result.stderr, result.stderr
    by_kind = {tags(i)["elasticcluster-kind"]: i for i in images.values()}
    assert set(by_kind) == {"compute", "frontend"}
    for kind, image in by_kind.items():
        assert tags(image)["elasticcluster-cluster"] == "bk"
        assert image["Name"].startswith(f"elasticcluster-bk-{kind}-") and image["State"] == "available"
        assert f"{kind}: {image['ImageId']} (from {kind}001)" in result.stdout
    # made without stopping the node
    assert [p["NoReboot"].lower() for p in proxy.params["CreateImage"]] == ["true", "true"]
    recorded = state(ec, "bk")["extra"]["images"]
    assert {kind: r["id"] for kind, r in recorded.items()} == {k: i["ImageId"] for k, i in by_kind.items()}
    assert {r["from"] for r in recorded.values()} == {"compute001", "frontend001"}
    assert {r["base"] for r in recorded.values()} == {moto.image_id}
    # the secrets went away and came back (the ones of this machine were never touched)
    assert fake_secrets.present() == FAKE_SECRETS and not STAGE.exists()
    new_snapshots = snapshot_ids(moto) - snapshots_before
    assert len(new_snapshots) == 2

    # a node that resize adds boots from the kind's image
    result = ec("resize", "bk", "-a", "1:compute", "--yes")
    assert result.returncode == 0, result.output
    assert f"boot from baked image {by_kind['compute']['ImageId']}" in result.stderr
    assert proxy.params["RunInstances"][-1]["ImageId"] == by_kind["compute"]["ImageId"]
    compute002 = [n for n in state(ec, "bk")["nodes"]["compute"] if n["name"] == "compute002"][0]
    assert compute002["image_id"] == by_kind["compute"]["ImageId"] and compute002["extra"]["baked"] is True
    [instance] = [i for i in moto.instances("bk") if tags(i)["elasticcluster-node"] == "compute002"]
    assert instance["ImageId"] == by_kind["compute"]["ImageId"]

    # baking a kind again replaces its image: the old one and its snapshot go
    result = ec("bake", "bk", "--kind", "compute")
    assert result.returncode == 0, result.output
    images_now = own_images(moto)
    assert by_kind["compute"]["ImageId"] not in images_now and by_kind["frontend"]["ImageId"] in images_now
    assert len(images_now) == 2

    # stop deletes the images and their snapshots
    result = ec("stop", "bk", "--yes")
    assert result.returncode == 0, result.output
    assert moto.instances("bk") == [] and own_images(moto) == {}
    assert snapshot_ids(moto) & new_snapshots == set()
    assert snapshot_ids(moto) == snapshots_before
    no_secret_anywhere(ec, result.output)


def test_stop_keep_images_and_a_new_start_boots_from_them(moto, proxy, ec, ssh_key, fake_secrets):
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=2), fake_secrets))
    assert ec("start", "slurm", "-n", "keep").returncode == 0
    assert ec("bake", "keep").returncode == 0
    by_kind = {tags(i)["elasticcluster-kind"]: i["ImageId"] for i in own_images(moto).values()}
    result = ec("stop", "keep", "--yes", "--keep-images")
    assert result.returncode == 0, result.output
    for kind, ami in by_kind.items():
        assert f"{kind}: {ami}" in result.stdout and f"image_id = {ami} in [cluster/slurm/{kind}]" in result.stdout
    assert moto.instances("keep") == [] and set(own_images(moto)) == set(by_kind.values())
    kept = ec.storage / ".kept-images" / "keep.json"
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    # a cluster of another name does not take them
    assert ec("start", "slurm", "-n", "other").returncode == 0
    assert {i["ImageId"] for i in moto.instances("other")} == {moto.image_id}
    assert ec("stop", "other", "--yes").returncode == 0
    assert set(own_images(moto)) == set(by_kind.values())
    # a new start under that name boots every node from them, and owns them from then on
    calls = len(proxy.params["RunInstances"])
    result = ec("start", "slurm", "-n", "keep")
    assert result.returncode == 0, result.output
    assert "2 compute node(s) boot from image" in result.stderr
    assert {p["ImageId"] for p in proxy.params["RunInstances"][calls:]} == set(by_kind.values())
    assert {tags(i)["elasticcluster-node"]: i["ImageId"] for i in moto.instances("keep")} == {
        "compute001": by_kind["compute"], "compute002": by_kind["compute"], "frontend001": by_kind["frontend"]}
    assert not kept.exists()
    assert ec("stop", "keep", "--yes").returncode == 0
    assert own_images(moto) == {}


def test_bake_after_setup_bakes_once(moto, ec, ssh_key, fake_secrets):
    ec.write(with_bake_secrets(ec2_config(moto.url, moto.image_id, ssh_key, compute=1,
                                          cluster_extra="bake_after_setup = yes"), fake_secrets))
    assert ec("start", "slurm", "-n", "bas").returncode == 0  # --no-setup: nothing is baked
    assert own_images(moto) == {}
    result = ec("setup", "bas")  # the no-op playbook (the nodes are this machine)
    assert result.returncode == 0, result.output
    assert "bake_after_setup" in result.stderr
    first = own_images(moto)
    assert {tags(i)["elasticcluster-kind"] for i in first.values()} == {"compute", "frontend"}
    assert fake_secrets.present() == FAKE_SECRETS
    assert ec("setup", "bas").returncode == 0
    assert own_images(moto) == first  # only after the first successful setup
    assert ec("stop", "bas", "--yes").returncode == 0
    assert own_images(moto) == {}


def test_the_secrets_are_away_while_the_image_is_made(moto, proxy, ec, ssh_key, fake_secrets):
    proxy.rules.append(Rule("CreateImage", delay=3))
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert ec("start", "slurm", "-n", "away").returncode == 0
    proc = ec.popen("bake", "away", "--kind", "compute")
    try:
        wait_for_calls(proxy, "CreateImage")
        key = fake_secrets.root / "etc/ssh/ssh_host_ed25519_key"
        assert not key.exists() and not (fake_secrets.root / "etc/munge/munge.key").exists()
        assert (fake_secrets.root / "etc/machine-id").read_text() == ""
        assert (STAGE / str(key).lstrip("/")).read_text() == "PRIVATE HOST KEY"
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert fake_secrets.present() == FAKE_SECRETS and not STAGE.exists()
    assert ec("stop", "away", "--yes").returncode == 0


def test_a_failed_create_image_puts_the_secrets_back(moto, proxy, ec, ssh_key, fake_secrets):
    proxy.rules.append(Rule("CreateImage", code="InvalidParameterValue"))
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert ec("start", "slurm", "-n", "fail").returncode == 0
    result = ec("bake", "fail")
    assert result.returncode == 1, result.output
    assert "InvalidParameterValue" in result.stderr and "Traceback" not in result.output
    assert fake_secrets.present() == FAKE_SECRETS and not STAGE.exists()
    assert own_images(moto) == {} and "images" not in state(ec, "fail")["extra"]
    proxy.rules.clear()
    assert ec("stop", "fail", "--yes").returncode == 0


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_bake_puts_the_secrets_back_and_stop_finds_the_image(moto, proxy, ec, ssh_key,
                                                                           fake_secrets, signum, status):
    # the signal arrives while CreateImage waits for its answer: the answer is recorded first
    proxy.rules.append(Rule("CreateImage", delay=1.5, signal=signum))
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert ec("start", "slurm", "-n", "intr").returncode == 0
    proc = ec.popen("bake", "intr")
    proxy.target = proc.pid
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "bake intr" in err
    assert fake_secrets.present() == FAKE_SECRETS and not STAGE.exists()
    [ami] = own_images(moto)
    assert state(ec, "intr")["extra"]["images"]["compute"]["id"] == ami  # the first kind, recorded
    proxy.rules.clear()
    result = ec("stop", "intr", "--yes")
    assert result.returncode == 0, result.output
    assert own_images(moto) == {}


def test_an_image_that_cannot_be_deleted_keeps_the_cluster_for_stop(moto, proxy, ec, ssh_key, fake_secrets):
    ec.write(with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets))
    assert ec("start", "slurm", "-n", "del").returncode == 0
    assert ec("bake", "del", "--kind", "frontend").returncode == 0
    [ami] = own_images(moto)
    proxy.rules.append(Rule("DeregisterImage", code="UnauthorizedOperation", status=403))
    result = ec("stop", "del", "--yes")
    assert result.returncode == 1 and "Traceback" not in result.output
    assert ami in result.stderr and "run stop again" in result.stderr
    assert moto.instances("del") == [] and set(own_images(moto)) == {ami}
    kept = state(ec, "del")
    assert kept["nodes"] == {} and kept["extra"]["images"]["frontend"]["id"] == ami
    proxy.rules.clear()
    result = ec("stop", "del", "--yes")
    assert result.returncode == 0, result.output
    assert own_images(moto) == {} and not (ec.storage / "del").exists()


def test_a_changed_image_id_wins_and_another_template_leaves_kept_images_alone(moto, proxy, ec, ssh_key,
                                                                               fake_secrets):
    config = with_bake_secrets(ec2_config(proxy.url, moto.image_id, ssh_key, compute=1), fake_secrets)
    config += f"""
[cluster/other]
cloud = moto
login = ubuntu
setup_provider = slurm
image_id = {moto.image_id}
flavor = t2.micro
security_group = elasticcluster-test
frontend_nodes = 1
compute_nodes = 1
ssh_to = frontend
"""
    ec.write(config)
    assert ec("start", "slurm", "-n", "chg").returncode == 0
    assert ec("bake", "chg", "--kind", "compute").returncode == 0
    [ami] = own_images(moto)
    # the template's image changes after the bake: new nodes boot from the template's image
    newer = [i["ImageId"] for i in moto.ec2.describe_images(Owners=["amazon"])["Images"]
             if i["ImageId"] != moto.image_id][0]
    ec.write(config.replace(f"image_id = {moto.image_id}", f"image_id = {newer}", 1))
    result = ec("resize", "chg", "-a", "1:compute", "--yes")
    assert result.returncode == 0, result.output
    assert proxy.params["RunInstances"][-1]["ImageId"] == newer
    assert f"image_id changed to {newer} since image {ami} was baked" in result.stderr
    assert ec("stop", "chg", "--yes", "--keep-images").returncode == 0
    # a cluster of that name from another template does not take the kept images
    calls = len(proxy.params["RunInstances"])
    result = ec("start", "other", "-n", "chg")
    assert result.returncode == 0, result.output
    assert "made from template slurm, not other" in result.stderr
    assert {p["ImageId"] for p in proxy.params["RunInstances"][calls:]} == {moto.image_id}
    assert ec("stop", "chg", "--yes").returncode == 0
    assert set(own_images(moto)) == {ami}  # still kept
    # from the same template whose image changed: kept, but not booted from; its stop deletes it
    calls = len(proxy.params["RunInstances"])
    result = ec("start", "slurm", "-n", "chg")
    assert result.returncode == 0, result.output
    assert {p["ImageId"] for p in proxy.params["RunInstances"][calls:]} == {newer}
    assert ec("stop", "chg", "--yes").returncode == 0
    assert own_images(moto) == {}
    assert not (ec.storage / ".kept-images" / "chg.json").exists()
