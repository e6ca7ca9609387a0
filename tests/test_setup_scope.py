"""How much of the setup a node gets (issue 13): the inventory marks nodes booted from a
matching baked image, the operations name the nodes a run sets up in full, and every package
task of the bundled playbooks honours ``elasticcluster_install``.

The end-to-end check (a resize from a baked image on real nodes, with the tasks each node
ran) is ``tests/local/test_bake.py``.
"""
from __future__ import annotations

import re

import pytest

from elasticcluster.resources import bundled_dir

CONFIG = """\
[cloud/local]
provider = local

[login/l]
image_user = u
user_key_name = k
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/s]
frontend_groups = slurm_master
compute_groups = slurm_worker

[cluster/c]
cloud = local
login = l
setup_provider = s
image_id = debian
flavor = small
frontend_nodes = 1
compute_nodes = 2
"""


@pytest.fixture
def cluster(write_config, tmp_path):
    from elasticcluster.conf import Configurator
    from elasticcluster.config import load_config
    from elasticcluster.repository import DiskRepository

    config = load_config(write_config(CONFIG))
    return Configurator(config, tmp_path / "storage", DiskRepository(tmp_path / "storage")).create_cluster("c")


def hosts(cluster):
    from elasticcluster.inventory import SetupSpec, inventory_for

    return inventory_for(cluster, SetupSpec.from_template(cluster.template_spec))["all"]["hosts"]


@pytest.mark.parametrize("groups, baked", [(["slurm_worker"], True), (["slurm_worker", "ganglia_monitor"], False),
                                           (None, False)])
def test_a_node_from_a_baked_image_installs_nothing_while_its_groups_are_those_baked(cluster, groups, baked):
    node = cluster.nodes["compute"][0]
    cluster.extra["images"] = {"compute": {"id": "img-1", "name": "baked", "from": "compute002", "made": 1,
                                           "base": "debian", "groups": groups}}
    node.image_id, node.extra["baked"] = "img-1", True
    found = hosts(cluster)
    assert found[node.name].get("elasticcluster_baked", False) is baked
    assert "elasticcluster_baked" not in found["compute002"] and "elasticcluster_baked" not in found["frontend001"]


def test_an_image_no_longer_recorded_installs_again(cluster):
    node = cluster.nodes["compute"][0]
    node.image_id, node.extra["baked"] = "img-gone", True
    assert "elasticcluster_baked" not in hosts(cluster)[node.name]


class Provider:
    """Stands in for ansible-playbook: these tests look at what the operations give it."""

    def __init__(self, fingerprint="digest-1"):
        self.seen, self.digest = [], fingerprint

    def run_setup(self, cluster, extra_args, verbosity, listener):
        from elasticcluster.playbook import PlaybookRun

        self.seen.append(extra_args)
        return PlaybookRun(returncode=0)

    def fingerprint(self):
        return self.digest


def test_run_setup_names_the_new_nodes_and_those_never_set_up(cluster):
    from elasticcluster import operations

    cluster.setup_provider = provider = Provider()
    cluster.repository.save_or_update(cluster)
    operations._run_setup(cluster, (), operations.Events())  # a whole setup records the digest
    assert cluster.extra["setup_fingerprint"] == "digest-1"
    for node in cluster.get_all_nodes():
        node.extra["set_up"] = node.name != "compute002"
    operations._run_setup(cluster, (), operations.Events(), new=["compute001"])
    assert provider.seen == [[], ["-e", '{"elasticcluster_new_nodes": ["compute001", "compute002"]}']]


@pytest.mark.parametrize("recorded", [None, "digest-0"])
def test_when_the_setup_changed_every_node_gets_the_whole_setup(cluster, recorded):
    from elasticcluster import operations

    cluster.setup_provider = provider = Provider()
    if recorded:
        cluster.extra["setup_fingerprint"] = recorded
    cluster.repository.save_or_update(cluster)
    said = []
    operations._run_setup(cluster, (), operations.Events(progress=said.append), new=["compute001"])
    assert provider.seen == [[]] and "every node gets the whole setup" in said[0]
    assert cluster.extra["setup_fingerprint"] == "digest-1"


def test_the_digest_follows_the_playbooks_and_the_settings(tmp_path):
    from elasticcluster.inventory import SetupSpec
    from elasticcluster.playbook import setup_fingerprint

    (tmp_path / "roles").mkdir()
    (tmp_path / "site.yml").write_text("- hosts: all\n")
    (tmp_path / "roles" / "r.yml").write_text("a\n")
    spec = SetupSpec(playbook=str(tmp_path / "site.yml"), groups={"compute": ["slurm_worker"]})
    first = setup_fingerprint(spec)
    assert setup_fingerprint(spec) == first
    (tmp_path / "roles" / "r.yml").write_text("b\n")
    second = setup_fingerprint(spec)
    assert second != first
    spec.global_vars["x"] = "1"
    assert setup_fingerprint(spec) not in (first, second)
    bundled = SetupSpec()
    assert setup_fingerprint(bundled) == setup_fingerprint(SetupSpec())


MODULE = re.compile(r"^(\s*)(?:- )?ansible\.builtin\.(apt|dnf|package):", re.M)


def test_every_package_task_of_the_bundled_roles_skips_nodes_that_need_no_install():
    playbooks = bundled_dir("playbooks")
    missing = []
    for path in sorted(playbooks.glob("roles/*/tasks/*.yml")):
        for task in re.split(r"\n(?=\s*- name:)", path.read_text()):
            if MODULE.search(task) and "elasticcluster_install | bool" not in task:
                missing.append(f"{path.relative_to(playbooks)}: {task.strip().splitlines()[0]}")
    assert not missing, missing
    scope = (playbooks / "group_vars" / "all" / "setup_scope.yml").read_text()
    assert "elasticcluster_install:" in scope and "elasticcluster_learn_only:" in scope
