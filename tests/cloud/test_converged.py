"""A second ``setup`` of a cluster that nothing changed does not run the playbook (issue 13).

Real parts: moto's EC2 server, the real CLI, the real ``ansible-playbook`` with our
callback, and a real sshd that every "node" leads to (this machine, in a private network
namespace: see conftest). The playbook (data/converge.yml) writes a folder and a file in
the test's temporary folder; the check digests them over SSH, as on real nodes.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.cloud.conftest import NOOP_PLAYBOOK, ec2_config

CONVERGE_PLAYBOOK = Path(__file__).resolve().parent / "data" / "converge.yml"
NODES = ["compute001", "compute002", "frontend001"]
UNCHANGED = "Nothing the setup manages changed since the last whole setup"


def config(moto, ssh_key, folder: Path, value: str = "1") -> str:
    text = ec2_config(moto.url, moto.image_id, ssh_key)
    return text.replace("[setup/slurm]\n", f"[setup/slurm]\nglobal_var_converge_dir = {folder}\n"
                                           f"global_var_converge_value = {value}\n", 1) \
        .replace(str(NOOP_PLAYBOOK), str(CONVERGE_PLAYBOOK))


def records(ec, name: str) -> dict[str, dict]:
    cluster = json.loads((ec.storage / name / "state.json").read_text())["cluster"]
    return {node["name"]: node["extra"].get("converged") for kind in cluster["nodes"].values() for node in kind}


def ran_playbook(result) -> bool:
    return "setup: Converge" in result.stderr


def test_second_setup_checks_the_nodes_instead_of_running_the_playbook(moto, ec, ssh_key, tmp_path):
    folder = tmp_path / "node"
    managed = folder / "etc" / "managed.conf"
    ec.write(config(moto, ssh_key, folder))
    assert ec("start", "slurm", "-n", "cv").returncode == 0  # --no-setup: nothing recorded yet
    assert not any(records(ec, "cv").values())

    # the first whole setup runs the playbook and records what it wrote on each node
    result = ec("setup", "cv")
    assert result.returncode == 0 and ran_playbook(result), result.output
    assert UNCHANGED not in result.stderr
    assert managed.read_text() == "value = 1\n"
    found = records(ec, "cv")
    assert sorted(found) == NODES
    for record in found.values():
        assert record["files"] == [str(managed)] and record["paths"] == [str(folder / "etc")], record
        assert len(record["digest"]) == 64 and record["services"] == record["users"] == []
    # (no content of a node reaches the controller: only its digest)
    assert "value = 1" not in (ec.storage / "cv" / "state.json").read_text()

    # unchanged: the check answers, the playbook does not run
    result = ec("setup", "cv")
    assert result.returncode == 0 and not ran_playbook(result), result.output
    assert f"{UNCHANGED} (6 files and folders, 0 services, 0 users and the installed packages checked on 3 nodes)" \
        in result.stderr, result.stderr
    assert "setup --full cv" in result.stderr

    # a managed file edited on the nodes: the whole setup runs and puts it back
    managed.write_text("value = edited by hand\n")
    result = ec("setup", "cv")
    assert result.returncode == 0 and ran_playbook(result), result.output
    assert "compute001, compute002, frontend001 changed since the last whole setup" in result.stderr
    assert managed.read_text() == "value = 1\n"

    # --full runs the playbook whatever the nodes look like
    result = ec("setup", "--full", "cv")
    assert result.returncode == 0 and ran_playbook(result) and UNCHANGED not in result.stderr, result.output

    # a changed setting: the whole setup runs, without asking the nodes
    ec.write(config(moto, ssh_key, folder, value="2"))
    result = ec("setup", "cv")
    assert result.returncode == 0 and ran_playbook(result), result.output
    assert "the playbooks, the setup's settings or the nodes changed" in result.stderr
    assert managed.read_text() == "value = 2\n"
    assert not ran_playbook(ec("setup", "cv"))

    # a failed setup forgets the records: the next setup runs the playbook, even if the
    # nodes look as before
    (folder / "fail").touch()
    result = ec("setup", "--full", "cv")
    assert result.returncode != 0 and "the test asked this setup to fail" in result.output, result.output
    assert not any(records(ec, "cv").values())
    (folder / "fail").unlink()
    result = ec("setup", "cv")
    assert result.returncode == 0 and ran_playbook(result), result.output

    # a node taken away: the others' inventory changed, the whole setup runs
    assert ec("remove-node", "cv", "compute002", "--yes").returncode == 0
    result = ec("setup", "cv")
    assert result.returncode == 0 and ran_playbook(result), result.output
    assert sorted(records(ec, "cv")) == ["compute001", "frontend001"]
    assert not ran_playbook(ec("setup", "cv"))
    assert ec("stop", "cv", "--yes").returncode == 0
