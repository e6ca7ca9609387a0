"""The data model (seed 4.5.2): Cluster, Node, node naming, frontend choice, (de)serialisation."""
from __future__ import annotations

import json

import pytest

from elasticcluster.cluster import Cluster, Node, check_cluster_name
from elasticcluster.exceptions import ElasticClusterError, NodeNotFound
from elasticcluster.repository import DiskRepository, MemRepository


def add(cluster: Cluster, kind: str, num: int = 1, **extra) -> list[Node]:
    return cluster.add_nodes(kind, num, "ami-00000048", "gc3-user", "m1.small", "default", **extra)


def names(cluster: Cluster, kind: str | None = None) -> list[str]:
    nodes = cluster.nodes.get(kind, []) if kind else cluster.get_all_nodes()
    return [n.name for n in nodes]


# -- naming ----------------------------------------------------------------------


def test_node_names_count_up_per_kind():
    cluster = Cluster("c")
    add(cluster, "compute", 3)
    add(cluster, "frontend")
    add(cluster, "compute", 2)
    assert names(cluster, "compute") == [f"compute00{i}" for i in range(1, 6)]
    assert names(cluster, "frontend") == ["frontend001"]
    node = cluster.get_node_by_name("compute004")
    assert (node.kind, node.cluster_name, node.image_id, node.image_user, node.flavor, node.security_group) == (
        "compute", "c", "ami-00000048", "gc3-user", "m1.small", "default")
    assert node.state == "new" and node.instance_id is None


def test_names_grow_past_three_digits():
    cluster = Cluster("c")
    add(cluster, "compute", 1000)
    assert names(cluster, "compute")[-2:] == ["compute999", "compute1000"]
    assert add(cluster, "compute")[0].name == "compute1001"


def test_removed_names_are_not_reused():
    cluster = Cluster("c")
    first, second, third = add(cluster, "compute", 3)
    cluster.remove_node(first)
    cluster.remove_node(second)
    assert add(cluster, "compute")[0].name == "compute004"  # max + 1, not the freed 001/002
    assert names(cluster, "compute") == ["compute003", "compute004"]


def test_the_name_of_the_last_node_is_not_reused_either(tmp_path):
    cluster = Cluster("c", repository=DiskRepository(tmp_path / "s"))
    add(cluster, "compute", 3)
    cluster.remove_node(cluster.get_node_by_name("compute003"))
    cluster.remove_node(cluster.get_node_by_name("compute002"))
    cluster.save()
    again = cluster.repository.get("c")  # the numbering survives the state file
    assert add(again, "compute")[0].name == "compute004"
    for node in list(again.nodes["compute"]):
        again.remove_node(node)
    assert add(again, "compute")[0].name == "compute005"
    assert add(again, "frontend")[0].name == "frontend001"


def test_kinds_that_end_in_digits_get_distinct_names():
    cluster = Cluster("c")
    add(cluster, "gpu2", 3)
    add(cluster, "node-10", 2)
    assert names(cluster, "gpu2") == ["gpu2001", "gpu2002", "gpu2003"]
    assert names(cluster, "node-10") == ["node-10001", "node-10002"]


def test_explicit_names_and_the_numbering_after_them():
    cluster = Cluster("c")
    assert cluster.add_node("compute", "ami", "u", "f", None, name="compute007").name == "compute007"
    assert add(cluster, "compute")[0].name == "compute008"
    cluster.add_node("compute", "ami", "u", "f", None, name="spare")
    assert add(cluster, "compute")[0].name == "compute009"
    with pytest.raises(ValueError, match="already has a node named compute008"):
        cluster.add_node("compute", "ami", "u", "f", None, name="compute008")


@pytest.mark.parametrize("kind", ["", "-compute", "_x", "com pute", "a/b", "../x", "compute.1", "kompüte", "compute\n", None])
def test_invalid_kind_raises_value_error(kind):
    cluster = Cluster("c")
    with pytest.raises(ValueError, match="invalid node kind"):
        cluster.add_node(kind, "ami", "u", "f", None)
    with pytest.raises(ValueError):
        cluster.add_nodes(kind, 2, "ami", "u", "f", None)
    assert cluster.nodes == {}


@pytest.mark.parametrize("kind", ["compute", "Frontend", "hadoop-data", "slurm_worker", "gpu2", "9x"])
def test_valid_kinds(kind):
    cluster = Cluster("c")
    assert add(cluster, kind)[0].name == f"{kind}001"


def test_add_node_extra_keys():
    cluster = Cluster("c")
    node = cluster.add_node("compute", "ami", "u", "f", "sg", image_userdata="#!/bin/sh\n",
                            network_ids=["net-1"], login="gc3-user", boot_disk_size=30)
    assert node.network_ids == ["net-1"] and node.login == "gc3-user"
    assert node.image_userdata == "#!/bin/sh\n"
    assert node.extra == {"boot_disk_size": 30}


# -- removing and finding nodes --------------------------------------------------------


def test_remove_node():
    cluster = Cluster("c")
    front = add(cluster, "frontend")[0]
    c1, c2 = add(cluster, "compute", 2)
    cluster.remove_node(c1)
    assert names(cluster) == ["compute002", "frontend001"]
    cluster.remove_node(front)
    assert "frontend" not in cluster.nodes
    assert cluster.node_counts() == {"compute": 1}
    with pytest.raises(NodeNotFound, match="compute001"):
        cluster.remove_node(c1)
    stranger = Cluster("other").add_node("compute", "ami", "u", "f", None)
    with pytest.raises(NodeNotFound):
        cluster.remove_node(stranger)
    assert cluster.get_all_nodes() == [c2]


def test_get_node_by_name_lists_the_nodes_when_missing():
    cluster = Cluster("c")
    add(cluster, "compute", 2)
    assert cluster.get_node_by_name("compute002").name == "compute002"
    with pytest.raises(NodeNotFound, match="compute001, compute002"):
        cluster.get_node_by_name("compute003")


def test_get_all_nodes_by_kind_in_alphabetical_order():
    cluster = Cluster("c")
    add(cluster, "zeta")
    add(cluster, "alpha", 2)
    add(cluster, "mid")
    assert names(cluster) == ["alpha001", "alpha002", "mid001", "zeta001"]
    assert cluster.node_counts() == {"alpha": 2, "mid": 1, "zeta": 1}


# -- frontend node (seed 4.2.5, 4.3.8) ----------------------------------------------------


def test_frontend_is_first_node_of_ssh_to_kind():
    cluster = Cluster("c", ssh_to="frontend")
    add(cluster, "compute", 2)
    add(cluster, "frontend", 2)
    assert cluster.get_frontend_node().name == "frontend001"
    cluster.remove_node(cluster.get_node_by_name("frontend001"))
    assert cluster.get_frontend_node().name == "frontend002"


def test_frontend_without_ssh_to_is_first_kind_alphabetically():
    # the seed's own example: frontend and compute nodes, no ssh_to -> compute001
    cluster = Cluster("c")
    add(cluster, "frontend")
    add(cluster, "compute", 2)
    assert cluster.get_frontend_node().name == "compute001"
    cluster.remove_node(cluster.get_node_by_name("compute001"))
    assert cluster.get_frontend_node().name == "compute002"


def test_no_frontend_node():
    with pytest.raises(NodeNotFound, match="no nodes"):
        Cluster("c").get_frontend_node()
    # ssh_to names a kind that has no node (left): the first kind alphabetically stands in
    cluster = Cluster("c", ssh_to="frontend")
    add(cluster, "compute")
    assert cluster.get_frontend_node().name == "compute001"


# -- nodes ---------------------------------------------------------------------------


def test_node_connection_ip():
    node = Cluster("c").add_node("compute", "ami", "u", "f", None)
    assert node.connection_ip() is None and node.ips == []
    node.private_ips = ["10.0.0.5"]
    assert node.connection_ip() == "10.0.0.5"
    node.public_ips = ["192.0.2.5", "10.0.0.5"]
    assert node.connection_ip() == "192.0.2.5"
    assert node.ips == ["192.0.2.5", "10.0.0.5"]
    node.preferred_ip = "10.0.0.5"
    assert node.connection_ip() == "10.0.0.5"


def test_node_pprint_shows_the_seed_fields():
    node = Cluster("c").add_node("compute", "ami", "u", "m1.small", None)
    node.public_ips, node.private_ips, node.instance_id = ["192.0.2.5"], ["10.0.0.5"], "i-0000299d"
    text = node.pprint()
    for expected in ("compute001", "192.0.2.5", "10.0.0.5", "i-0000299d", "m1.small"):
        assert expected in text


# -- serialisation --------------------------------------------------------------------


def populated() -> Cluster:
    cluster = Cluster("round", user_key_name="key", user_key_public="~/.ssh/id.pub",
                      user_key_private="~/.ssh/id", template="slurm", cloud="hobbes",
                      provider="ec2_boto", login="gc3-user", setup_name="ansible-slurm",
                      ssh_to="frontend", note="kept")
    add(cluster, "frontend")
    c1, _ = add(cluster, "compute", 2, boot_disk_size=20)
    c1.instance_id, c1.state = "i-1", "running"
    c1.public_ips, c1.private_ips, c1.preferred_ip = ["192.0.2.1"], ["10.0.0.1"], "192.0.2.1"
    c1.network_ids = ["net-a", "net-b"]
    return cluster


def test_to_dict_from_dict_round_trip():
    cluster = populated()
    data = cluster.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    again = Cluster.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert (again.template, again.cloud, again.provider, again.login, again.setup_name, again.ssh_to) == (
        "slurm", "hobbes", "ec2_boto", "gc3-user", "ansible-slurm", "frontend")
    assert (again.user_key_name, again.user_key_public, again.user_key_private) == (
        "key", "~/.ssh/id.pub", "~/.ssh/id")
    assert again.extra["note"] == "kept"
    node = again.get_node_by_name("compute001")
    assert isinstance(node, Node)
    assert (node.instance_id, node.state, node.public_ips, node.private_ips, node.preferred_ip) == (
        "i-1", "running", ["192.0.2.1"], ["10.0.0.1"], "192.0.2.1")
    assert node.network_ids == ["net-a", "net-b"] and node.extra == {"boot_disk_size": 20}
    assert again.get_frontend_node().name == "frontend001"
    # numbering carries on after a reload
    assert add(again, "compute")[0].name == "compute003"


def test_from_dict_attaches_the_repository(tmp_path):
    repo = DiskRepository(tmp_path / "s")
    again = Cluster.from_dict(populated().to_dict(), repository=repo)
    assert again.repository is repo
    again.save()
    assert repo.get("round").to_dict() == again.to_dict()
    assert isinstance(Cluster.from_dict(populated().to_dict()).repository, MemRepository)


def test_no_secret_in_the_serialised_cluster():
    data = json.dumps(populated().to_dict())
    assert "secret" not in data.lower() and "password" not in data.lower()


# -- cluster names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "/abs", "a\\b", ".hidden", "-dash", "", "a b",
                                  "x\n", "x" * 101, "naïve"])
def test_invalid_cluster_names_rejected(name):
    with pytest.raises(ValueError, match="invalid cluster name"):
        Cluster(name)
    with pytest.raises(ValueError, match="invalid cluster name"):
        check_cluster_name(name)


@pytest.mark.parametrize("name", ["slurm", "my-cluster", "a.b", "c_1", "x+y", "9lives", "x" * 100])
def test_valid_cluster_names(name):
    assert Cluster(name).name == name


def test_cluster_lifecycle_needs_providers():
    import elasticcluster.operations  # noqa: F401 (what `import elasticcluster`'s API names load)

    cluster = populated()
    for call in (cluster.start, cluster.stop, cluster.setup, cluster.update):
        with pytest.raises(ElasticClusterError, match="no cloud provider|no setup provider"):
            call()


def test_building_a_large_cluster_is_linear(monkeypatch):
    """Each new node's number was found by scanning every node of its kind: 16,000 nodes took
    91 s. Now the last number is kept: the index pattern is matched a few times per node."""
    from elasticcluster import cluster as model

    calls = []
    pattern = model._INDEX_RE

    class Counting:
        def fullmatch(self, text):
            calls.append(text)
            return pattern.fullmatch(text)

    monkeypatch.setattr(model, "_INDEX_RE", Counting())
    cluster = Cluster("big")
    cluster.add_nodes("compute", 3000, "ami-00000048", "u", "m1.small", None)
    assert [n.name for n in cluster.nodes["compute"][-2:]] == ["compute2999", "compute3000"]
    assert len(calls) <= 2 * 3000


def test_a_cluster_holds_at_most_max_nodes():
    from elasticcluster.cluster import MAX_NODES
    from elasticcluster.exceptions import UsageError

    cluster = Cluster("huge")
    with pytest.raises(UsageError, match=f"at most {MAX_NODES}"):
        cluster.add_nodes("compute", 1000000000, "ami-00000048", "u", "m1.small", None)
    assert cluster.get_all_nodes() == []


def test_images_are_the_valid_records_of_the_state():
    cluster = Cluster("baked")
    assert cluster.images == {} and cluster.old_images == []
    good = {"id": "ami-1", "name": "n", "from": "compute001", "made": 1, "base": "ami-0"}
    cluster.extra["images"] = {"compute": good, "frontend": {"name": "no id"}, "gpu": "ami-2"}
    cluster.extra["old_images"] = [good, None, {"id": ""}]
    assert cluster.images == {"compute": good} and cluster.old_images == [good]
    cluster.images["compute"]["id"] = "changed"  # a copy: the state changes only when assigned
    assert cluster.extra["images"]["compute"]["id"] == "ami-1"
    for garbage in ("x", ["ami-1"], 7, None):
        cluster.extra["images"] = cluster.extra["old_images"] = garbage
        assert cluster.images == {} and cluster.old_images == []
