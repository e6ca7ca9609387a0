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


def test_run_setup_names_the_new_nodes_and_those_never_set_up(cluster):
    from elasticcluster import operations
    from elasticcluster.playbook import PlaybookRun

    seen = []

    class Provider:  # stands in for ansible-playbook: this test looks at what it is given
        def run_setup(self, cluster, extra_args, verbosity, listener):
            seen.append(extra_args)
            return PlaybookRun(returncode=0)

    cluster.setup_provider = Provider()
    cluster.repository.save_or_update(cluster)
    for node in cluster.get_all_nodes():
        node.extra["set_up"] = node.name != "compute002"
    operations._run_setup(cluster, (), operations.Events(), new=["compute001"])
    operations._run_setup(cluster, (), operations.Events())
    assert seen[0] == ["-e", '{"elasticcluster_new_nodes": ["compute001", "compute002"]}']
    assert seen[1] == []


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
