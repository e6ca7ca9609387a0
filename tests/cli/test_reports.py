"""The report commands on stored clusters: ``list`` and ``list-nodes`` (seed 4.3.3, 4.3.4).

Clusters are saved through the API, then the real CLI reads them in another
process, piped (plain text or --json) and under a pseudo-terminal (rich).
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from elasticcluster.cluster import Cluster
from elasticcluster.repository import DiskRepository

BOX = set("┏┓┗┛━┃┡┩│─┼┳┻╇╈┌┐└┘")
NODE_KEYS = {"name", "kind", "state", "instance_id", "public_ips", "private_ips", "preferred_ip", "flavor",
             "image_id", "security_group"}


def save_cluster(storage: Path, name: str, template: str, cloud: str, provider: str, counts: dict[str, int],
                 ssh_to: str | None = None) -> Cluster:
    repo = DiskRepository(storage)
    cluster = Cluster(name, repository=repo, template=template, cloud=cloud, provider=provider, ssh_to=ssh_to)
    for kind, count in counts.items():
        cluster.add_nodes(kind, count, f"ami-{kind}", "gc3-user", f"{kind}-flavor", "default")
    for i, node in enumerate(cluster.get_all_nodes(), start=1):
        node.instance_id = f"i-{i:08x}"
        node.public_ips = [f"192.0.2.{i}"]
        node.private_ips = [f"10.10.10.{i}"]
        node.preferred_ip = node.public_ips[0]
        node.state = "running"
    repo.save_or_update(cluster)
    return cluster


@pytest.fixture
def storage(tmp_path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def stored(storage):
    """Two clusters, as ``start`` will leave them."""
    return {
        "alpha": save_cluster(storage, "alpha", "slurm", "hobbes", "ec2_boto",
                              {"frontend": 1, "compute": 2}, ssh_to="frontend"),
        "beta": save_cluster(storage, "beta", "gridengine", "cloudy", "openstack",
                             {"frontend": 1, "compute": 4}),
    }


def run_on_terminal(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; return (status, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "LC_ALL": "C.UTF-8", "COLUMNS": "160",
                **(env or {})}
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "elasticcluster", *argv], stdin=slave, stdout=slave,
                            stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        status = proc.wait(timeout=10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return status, b"".join(chunks).decode("utf-8", "replace")


# -- list ---------------------------------------------------------------------------


def test_list_with_no_clusters(cli, storage):
    result = cli("-s", str(storage), "list")
    assert (result.returncode, result.stdout, result.stderr) == (0, "No clusters found.\n", "")
    result = cli("-s", str(storage), "list", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"format": 1, "clusters": [], "unreadable": []}
    assert not storage.exists(), "list only reads: it creates no storage folder"


def test_list_plain(cli, storage, stored):
    result = cli("-s", str(storage), "list")
    assert result.returncode == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("The following clusters have been started.\n")
    alpha, beta = out.index("\nalpha\n-----\n"), out.index("\nbeta\n----\n")
    assert alpha < beta
    alpha_block, beta_block = out[alpha:beta], out[beta:]
    for key, value in (("name", "alpha"), ("template", "slurm"), ("cloud", "hobbes")):
        assert f"\n{key}:".ljust(16) + value + "\n" in alpha_block
    assert "- compute nodes: 2\n" in alpha_block and "- frontend nodes: 1\n" in alpha_block
    assert "template:      gridengine\n" in beta_block and "cloud:         cloudy\n" in beta_block
    assert "- compute nodes: 4\n" in beta_block
    assert not BOX & set(out), "piped output is plain text"
    assert "\x1b[" not in result.output, "no colour when piped"


def test_list_json(cli, storage, stored):
    result = cli("-s", str(storage), "list", "--json")
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"format", "clusters", "unreadable"}
    assert data["format"] == 1 and data["unreadable"] == []
    assert [c["name"] for c in data["clusters"]] == ["alpha", "beta"]
    for row in data["clusters"]:
        assert set(row) == {"name", "template", "cloud", "provider", "nodes"}
        cluster = stored[row["name"]]
        assert (row["template"], row["cloud"], row["provider"]) == (cluster.template, cluster.cloud, cluster.provider)
        assert row["nodes"] == cluster.node_counts()
    assert data["clusters"][1]["nodes"] == {"compute": 4, "frontend": 1}


def test_list_uses_the_default_storage_under_home(cli, home):
    save_cluster(home / ".elasticcluster" / "storage", "homely", "slurm", "hobbes", "ec2_boto", {"compute": 1})
    result = cli("list", "--json")
    assert result.returncode == 0, result.output
    assert [c["name"] for c in json.loads(result.stdout)["clusters"]] == ["homely"]


# -- corrupt state files ------------------------------------------------------------

CORRUPT = {
    "invalid-json": b'{"format": 1, "cluster": {"name": "bad", "nod',
    "no-format": b'{"cluster": {"name": "bad", "nodes": {}}}\n',
    "newer-format": b'{"format": 99, "cluster": {"name": "bad", "nodes": {}}}\n',
    "wrong-name-inside": b'{"format": 1, "cluster": {"name": "alpha", "nodes": {}}}\n',
    "empty": b"",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_list_reports_a_corrupt_file_and_lists_the_others(cli, storage, stored, kind):
    bad = storage / "bad" / "state.json"
    bad.parent.mkdir()
    bad.write_bytes(CORRUPT[kind])

    result = cli("-s", str(storage), "list")
    assert result.returncode == 2
    assert "Traceback" not in result.output
    assert "\nalpha\n" in result.stdout and "\nbeta\n" in result.stdout
    assert "\nbad\n" not in result.stdout
    assert "cluster 'bad'" in result.stderr and str(bad) in result.stderr
    assert result.stderr.count("ERROR:") == 1, "only the bad cluster is reported"

    result = cli("-s", str(storage), "list", "--json")
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["clusters"]] == ["alpha", "beta"]
    assert len(data["unreadable"]) == 1
    (entry,) = data["unreadable"]
    assert set(entry) == {"name", "path", "reason"}
    assert (entry["name"], entry["path"]) == ("bad", str(bad))
    assert entry["reason"]

    result = cli("-s", str(storage), "list-nodes", "bad")
    assert result.returncode == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert str(bad) in result.stderr and entry["reason"] in result.stderr

    # the other clusters still work, and nothing touched the bad file
    assert cli("-s", str(storage), "list-nodes", "alpha").returncode == 0
    assert bad.read_bytes() == CORRUPT[kind]


def test_directory_in_place_of_a_state_file(cli, storage, stored):
    # the tests run as root, which reads mode-000 files: a directory cannot be read by anyone
    bad = storage / "bad" / "state.json"
    bad.mkdir(parents=True)
    result = cli("-s", str(storage), "list")
    assert result.returncode == 2
    assert "\nalpha\n" in result.stdout and "\nbeta\n" in result.stdout
    assert str(bad) in result.stderr and "cannot be read" in result.stderr
    assert "Traceback" not in result.output
    result = cli("-s", str(storage), "list-nodes", "bad")
    assert result.returncode == 2 and "cannot be read" in result.stderr
    assert bad.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files; see test_directory_in_place_of_a_state_file")
def test_mode_000_state_file(cli, storage, stored):
    bad = storage / "bad" / "state.json"
    bad.parent.mkdir()
    bad.write_text("{}")
    bad.chmod(0)
    result = cli("-s", str(storage), "list")
    assert result.returncode == 2 and str(bad) in result.stderr


# -- list-nodes -----------------------------------------------------------------------


def test_list_nodes_plain_follows_the_seed(cli, storage, stored):
    result = cli("-s", str(storage), "list-nodes", "alpha")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    expected_in_order = [
        "Cluster name:      alpha",
        "Cluster template:  slurm",
        "Frontend node:     frontend001",
        "To login on the frontend node, run the command:",
        f"    elasticcluster -s {storage} ssh alpha",
        "To upload or download files to the cluster, use the command:",
        f"    elasticcluster -s {storage} sftp alpha",
        "compute nodes:",
        "- compute001",
        "- compute002",
        "frontend nodes:",
        "- frontend001",
    ]
    positions = [lines.index(line) for line in expected_in_order]
    assert positions == sorted(positions)
    assert "- compute nodes: 2" in lines and "- frontend nodes: 1" in lines
    front = stored["alpha"].get_node_by_name("frontend001")
    block = "\n".join(lines[lines.index("- frontend001"):])
    for label, value in (("public IP", front.public_ips[0]), ("private IP", front.private_ips[0]),
                         ("instance id", front.instance_id), ("instance flavor", "frontend-flavor")):
        assert f"  {label}:" in block and value in block
    assert not BOX & set(result.stdout)


def test_list_nodes_connection_hint_with_default_paths(cli, home):
    save_cluster(home / ".elasticcluster" / "storage", "homely", "slurm", "hobbes", "ec2_boto",
                 {"frontend": 1, "compute": 1})
    result = cli("list-nodes", "homely")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert "    elasticcluster ssh homely" in lines
    assert "    elasticcluster sftp homely" in lines
    # no ssh_to: the first kind in alphabetical order (seed 4.2.5)
    assert "Frontend node:     compute001" in lines


def test_list_nodes_json(cli, storage, stored):
    result = cli("-s", str(storage), "list-nodes", "beta", "--json")
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"format", "cluster"} and data["format"] == 1
    info = data["cluster"]
    assert set(info) == {"name", "template", "cloud", "provider", "frontend", "nodes", "images"}
    assert info["images"] == {}
    beta = stored["beta"]
    assert (info["name"], info["template"], info["cloud"], info["provider"]) == (
        "beta", "gridengine", "cloudy", "openstack")
    assert info["frontend"] == beta.get_frontend_node().name == "compute001"
    assert [n["name"] for n in info["nodes"]] == [n.name for n in beta.get_all_nodes()]
    for row, node in zip(info["nodes"], beta.get_all_nodes(), strict=True):
        assert set(row) == NODE_KEYS
        assert row == {key: getattr(node, key) for key in NODE_KEYS}


def test_list_nodes_of_a_cluster_without_nodes(cli, storage):
    save_cluster(storage, "empty", "slurm", "hobbes", "ec2_boto", {})
    result = cli("-s", str(storage), "list-nodes", "empty", "--json")
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout)["cluster"]["frontend"] is None
    result = cli("-s", str(storage), "list-nodes", "empty")
    assert result.returncode == 0 and "Frontend node:     -" in result.stdout


def test_list_nodes_unknown_cluster_names_the_stored_ones(cli, storage, stored):
    result = cli("-s", str(storage), "list-nodes", "gamma")
    assert result.returncode == 2
    assert "no cluster named 'gamma'" in result.stderr
    assert "alpha, beta" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("name", ["../alpha", "a/b", ".hidden"])
def test_list_nodes_invalid_name(cli, storage, stored, name):
    result = cli("-s", str(storage), "list-nodes", name)
    assert result.returncode == 2
    assert "invalid cluster name" in result.stderr
    assert "Traceback" not in result.output


# -- on a terminal --------------------------------------------------------------------


def test_rich_tables_on_a_terminal(storage, stored, home):
    status, out = run_on_terminal(["-s", str(storage), "list"])
    assert status == 0, out
    assert BOX & set(out), f"no table drawn on a terminal:\n{out}"
    assert "\x1b[" in out, "colour on a terminal"
    for word in ("alpha", "beta", "slurm", "gridengine", "hobbes", "cloudy"):
        assert word in out

    status, out = run_on_terminal(["-s", str(storage), "list-nodes", "alpha"])
    assert status == 0, out
    assert BOX & set(out)
    for word in ("frontend001", "compute002", "192.0.2.1", "i-00000001", "running"):
        assert word in out
    assert "Traceback" not in out


def test_terminal_json_is_still_plain_json(storage, stored, home):
    status, out = run_on_terminal(["-s", str(storage), "list", "--json"])
    assert status == 0, out
    assert json.loads(out.replace("\r\n", "\n"))["clusters"][0]["name"] == "alpha"


def test_list_nodes_names_the_baked_images(cli, storage):
    from elasticcluster.repository import DiskRepository

    save_cluster(storage, "baked", "slurm", "hobbes", "ec2_boto", {"frontend": 1, "compute": 1})
    repo = DiskRepository(storage)
    cluster = repo.get("baked")
    cluster.extra["images"] = {"compute": {"id": "ami-0b", "name": "elasticcluster-baked-compute-1",
                                           "from": "compute001", "made": 1700000000, "base": "ami-00000048"}}
    cluster.save()
    data = json.loads(cli("-s", str(storage), "list-nodes", "baked", "--json").stdout)
    assert data["cluster"]["images"] == {"compute": {"id": "ami-0b", "name": "elasticcluster-baked-compute-1",
                                                     "from": "compute001", "made": 1700000000}}
    result = cli("-s", str(storage), "list-nodes", "baked")
    assert "- compute image:     ami-0b (baked from compute001)" in result.stdout.splitlines()
