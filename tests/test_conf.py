"""The seed's Configurator (seed 4.5.3): clusters built from a real configuration file."""
from __future__ import annotations

import json

import pytest

from elasticcluster.cluster import Cluster
from elasticcluster.conf import Configurator
from elasticcluster.exceptions import (
    ClusterExists,
    ClusterNotFound,
    ConfigurationError,
    StateFileError,
    UsageError,
)
from elasticcluster.repository import DiskRepository, MemRepository
from tests.conftest import VALID_CONFIG

OVERRIDES = VALID_CONFIG + """
[login/ubuntu]
image_user = ubuntu
image_user_sudo = root
image_sudo = True
user_key_name = elasticcluster
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[cluster/slurm/frontend]
flavor = bigdisk
image_id = ami-0000004f
login = ubuntu
"""


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "storage"


@pytest.fixture
def configurator(write_config, storage, home):
    return Configurator.fromConfig(write_config(VALID_CONFIG), storage)


def test_from_config_creates_the_template_cluster(configurator, storage):
    cluster = configurator.create_cluster("slurm")
    assert isinstance(cluster, Cluster)
    assert cluster.name == "slurm"
    assert [n.name for n in cluster.get_all_nodes()] == ["compute001", "compute002", "frontend001"]
    for node in cluster.get_all_nodes():
        assert (node.image_id, node.image_user, node.flavor, node.security_group) == (
            "ami-00000048", "gc3-user", "m1.small", "default")
        assert node.cluster_name == "slurm" and node.state == "new"
        assert node.login == "gc3-user"
    assert (cluster.template, cluster.cloud, cluster.provider, cluster.login, cluster.setup_name) == (
        "slurm", "hobbes", "ec2_boto", "gc3-user", "ansible-slurm")
    assert cluster.ssh_to == "frontend"
    assert cluster.get_frontend_node().name == "frontend001"
    assert cluster.user_key_name == "elasticcluster"
    assert cluster.user_key_private.endswith("/.ssh/id_rsa")
    assert cluster.user_key_public.endswith("/.ssh/id_rsa.pub")
    assert cluster.repository is configurator.repository
    assert not (storage / "slurm" / "state.json").exists(), "creating a cluster does not store it yet"


def test_created_cluster_holds_no_secret(configurator):
    text = json.dumps(configurator.create_cluster("slurm").to_dict())
    assert "wJalrXUtnFEMI" not in text and "AKIDEXAMPLE" not in text


def test_named_cluster_then_load(configurator, storage):
    cluster = configurator.create_cluster("slurm", name="mine")
    assert cluster.name == "mine" and cluster.template == "slurm"
    cluster.save()
    assert (storage / "mine" / "state.json").is_file()
    loaded = configurator.load_cluster("mine")
    assert loaded.to_dict() == cluster.to_dict()
    with pytest.raises(ClusterNotFound, match="mine"):
        configurator.load_cluster("yours")


def test_name_already_stored_raises_cluster_exists(configurator, storage):
    configurator.create_cluster("slurm").save()
    before = (storage / "slurm" / "state.json").read_bytes()
    with pytest.raises(ClusterExists, match="slurm") as err:
        configurator.create_cluster("slurm")
    assert err.value.exit_status == 2
    assert (storage / "slurm" / "state.json").read_bytes() == before
    # another name is fine
    assert configurator.create_cluster("slurm", name="slurm2").name == "slurm2"


def test_unreadable_state_file_still_counts_as_taken(configurator, storage):
    (storage / "slurm").mkdir(parents=True)
    (storage / "slurm" / "state.json").write_text("{broken")
    with pytest.raises(ClusterExists):
        configurator.create_cluster("slurm")
    assert (storage / "slurm" / "state.json").read_text() == "{broken"
    with pytest.raises(StateFileError):
        configurator.load_cluster("slurm")


def test_cluster_exists_with_a_memory_repository(write_config, home):
    from elasticcluster.config import load_config

    configurator = Configurator(load_config(write_config(VALID_CONFIG)), repository=MemRepository())
    configurator.create_cluster("slurm").save()
    with pytest.raises(ClusterExists):
        configurator.create_cluster("slurm")


def test_per_kind_override(write_config, storage, home):
    configurator = Configurator.fromConfig(write_config(OVERRIDES), storage)
    cluster = configurator.create_cluster("slurm")
    front = cluster.get_node_by_name("frontend001")
    assert (front.flavor, front.image_id, front.image_user, front.login) == (
        "bigdisk", "ami-0000004f", "ubuntu", "ubuntu")
    for node in cluster.nodes["compute"]:
        assert (node.flavor, node.image_id, node.image_user, node.login) == (
            "m1.small", "ami-00000048", "gc3-user", "gc3-user")


def test_node_counts_override(configurator):
    cluster = configurator.create_cluster("slurm", node_counts={"compute": 5})
    assert cluster.node_counts() == {"compute": 5, "frontend": 1}
    assert [n.name for n in cluster.nodes["compute"]][-1] == "compute005"
    cluster = configurator.create_cluster("slurm", name="small", node_counts={"compute": 0, "frontend": 2})
    assert cluster.node_counts() == {"frontend": 2}
    # the template itself is unchanged
    assert configurator.create_cluster("slurm", name="again").node_counts() == {"compute": 2, "frontend": 1}


def test_node_counts_for_an_unknown_kind(configurator):
    with pytest.raises(UsageError, match="no node kind 'gpu'.*compute, frontend"):
        configurator.create_cluster("slurm", node_counts={"gpu": 1})


def test_unknown_template(configurator):
    with pytest.raises(ConfigurationError, match="no cluster template 'slurmm'.*did you mean slurm"):
        configurator.create_cluster("slurmm")


def test_invalid_cluster_name(configurator, storage):
    with pytest.raises(ConfigurationError, match="invalid cluster name"):
        configurator.create_cluster("slurm", name="../escape")
    assert not (storage.parent / "escape.json").exists()


def test_default_storage_path(write_config, home):
    configurator = Configurator.fromConfig(write_config(VALID_CONFIG))
    assert configurator.storage_path == home / ".elasticcluster" / "storage"
    assert isinstance(configurator.repository, DiskRepository)
    assert configurator.repository.storage_path == configurator.storage_path


def test_providers_for_an_unknown_template(configurator):
    with pytest.raises(ConfigurationError, match="nosuch"):
        configurator.create_cloud_provider("nosuch")
    with pytest.raises(ConfigurationError, match="nosuch"):
        configurator.create_setup_provider("nosuch")


def test_setup_provider_runs_the_templates_playbook(configurator):
    from elasticcluster.playbook import AnsibleSetupProvider

    provider = configurator.create_setup_provider("slurm")
    assert isinstance(provider, AnsibleSetupProvider)
    assert provider.template.setup_name == "ansible-slurm"
    cluster = configurator.create_cluster("slurm")
    assert cluster.setup_provider.template.name == "slurm"


def test_from_config_with_a_broken_file(write_config, storage, home):
    path = write_config(VALID_CONFIG.replace("flavor = m1.small\n", ""))
    configurator = Configurator.fromConfig(path, storage)
    with pytest.raises(ConfigurationError, match="slurm") as err:
        configurator.create_cluster("slurm")
    assert "flavor" in str(err.value)
