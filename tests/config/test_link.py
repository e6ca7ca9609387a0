"""Linking sections into templates: dangling names, kinds, overrides, legacy keys, --nodes."""
from __future__ import annotations

import argparse
import logging

import pytest

from elasticcluster.cli.lifecycle import node_counts
from elasticcluster.config import load_config
from elasticcluster.exceptions import ConfigurationError, UsageError
from tests.config.cfgtools import (
    drop_key,
    header_line,
    key_line,
    list_json,
    listed,
    no_traceback,
    set_key,
    skipped,
)
from tests.conftest import VALID_CONFIG

CLUSTER = "cluster/slurm"
SETUP = "setup/ansible-slurm"

OTHER_LOGIN = """
[login/centos]
image_user = centos
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-centos
user_key_private = ~/.ssh/centos_rsa
user_key_public = ~/.ssh/centos_rsa.pub
"""


def _load(write_config, text):
    return load_config(write_config(text))


def _warning_texts(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- dangling links -----------------------------------------------------------


@pytest.mark.parametrize("key, type_, wrong, hint", [
    ("cloud", "cloud", "hobbs", "did you mean 'hobbes'?"),
    ("login", "login", "gc3_user", "did you mean 'gc3-user'?"),
    ("setup_provider", "setup", "nothing-like-it", "defined: ansible-slurm"),
])
def test_dangling_link(write_config, key, type_, wrong, hint):
    text = set_key(VALID_CONFIG, CLUSTER, key, wrong)
    path = write_config(text)
    config = load_config(path)
    assert config.templates == {}
    problems = config.skipped["slurm"]
    matching = [p for p in problems if f"there is no [{type_}/{wrong}] section" in p]
    assert len(matching) == 1, problems
    assert matching[0].startswith(f"{path}:{key_line(text, CLUSTER, key)}: [{CLUSTER}] {key} = {wrong!r}")
    assert hint in matching[0]


def test_dangling_link_when_no_section_of_that_type_exists(write_config):
    text = VALID_CONFIG.replace("[cloud/hobbes]", "[unused/hobbes]")
    problems = _load(write_config, text).skipped["slurm"]
    assert any("there is no [cloud/hobbes] section (no [cloud/NAME] section is defined" in p
               for p in problems), problems


def test_ssh_to_names_a_kind_that_does_not_exist(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "ssh_to", "head")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, CLUSTER, 'ssh_to')}: [{CLUSTER}] ssh_to = 'head' is not a "
                        "node kind of this cluster; expected one of: compute, frontend (or a node's name, "
                        "e.g. compute001)"]


def test_bad_count_of_the_ssh_to_kind_is_one_problem(write_config):
    """frontend_nodes = '' is the problem; ssh_to = frontend is not a second one."""
    problems = _load(write_config, set_key(VALID_CONFIG, CLUSTER, "frontend_nodes", "")).skipped["slurm"]
    assert len(problems) == 1 and "frontend_nodes = ''" in problems[0], problems


def test_kind_without_groups_in_setup(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "gpu_nodes", "2")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{header_line(text, SETUP)}: [{SETUP}]")
    assert "no 'gpu_groups' key for the gpu nodes of [cluster/slurm]" in problems[0]
    assert "expected gpu_groups = a comma-separated list of Ansible groups" in problems[0]
    # adding the groups fixes it
    fixed = set_key(text, SETUP, "gpu_groups", "slurm_clients,gpu")
    template = _load(write_config, fixed).templates["slurm"]
    assert template.kinds["gpu"].groups == ["slurm_clients", "gpu"]
    assert template.kinds["gpu"].count == 2


def test_min_nodes_above_nodes(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "compute_min_nodes", "3")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, CLUSTER, 'compute_min_nodes')}: [{CLUSTER}] "
                        "compute_min_nodes = 3 is more than compute_nodes = 2; expected at most 2"]


def test_min_nodes_within_nodes(write_config):
    template = _load(write_config, set_key(VALID_CONFIG, CLUSTER, "compute_min_nodes", "1")).templates["slurm"]
    assert template.kinds["compute"].min_count == 1
    assert template.kinds["frontend"].min_count == 1  # defaults to the count


def test_a_dangling_link_in_one_template_leaves_the_other(cli, write_config):
    text = VALID_CONFIG + """
[cluster/broken]
cloud = nowhere
login = gc3-user
setup_provider = ansible-slurm
image_id = ami-1
flavor = m1.tiny
compute_nodes = 1
"""
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 0
    assert list(listed(data)) == ["slurm"]
    assert any("there is no [cloud/nowhere] section" in p for p in skipped(data)["broken"])


# -- per-kind overrides -------------------------------------------------------


def test_per_kind_overrides(write_config):
    text = VALID_CONFIG + OTHER_LOGIN + """
[cluster/slurm/frontend]
flavor = bigdisk
image_id = ami-frontend
login = centos
security_group = frontend-sg
boot_disk_size = 100
"""
    template = _load(write_config, text).templates["slurm"]
    frontend, compute = template.kinds["frontend"], template.kinds["compute"]
    assert (frontend.flavor, frontend.image_id, frontend.login, frontend.security_group) == \
        ("bigdisk", "ami-frontend", "centos", "frontend-sg")
    assert frontend.extra["boot_disk_size"] == 100
    # the other kind keeps the cluster's values
    assert (compute.flavor, compute.image_id, compute.login, compute.security_group) == \
        ("m1.small", "ami-00000048", "gc3-user", "default")
    assert "boot_disk_size" not in compute.extra
    # the override's login section was checked and linked too
    assert template.logins["centos"]["image_user"] == "centos"
    assert template.login_name == "gc3-user"


def test_per_kind_override_with_bad_values(write_config):
    text = VALID_CONFIG + """
[cluster/slurm/compute]
login = nobody
boot_disk_size = huge
"""
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert len(problems) == 2, problems
    node = "cluster/slurm/compute"
    assert f"{path}:{key_line(text, node, 'login')}: [{node}] login = 'nobody': there is no [login/nobody] " \
           "section" in problems[0] + problems[1]
    assert f"{path}:{key_line(text, node, 'boot_disk_size')}: [{node}] boot_disk_size = 'huge' cannot be " \
           "read; expected a size in GB" in problems[0] + problems[1]


def test_per_kind_override_login_section_is_validated(write_config):
    text = VALID_CONFIG + OTHER_LOGIN.replace("image_sudo = yes", "image_sudo = sometimes") + """
[cluster/slurm/frontend]
login = centos
"""
    problems = _load(write_config, text).skipped["slurm"]
    assert any("[login/centos] image_sudo = 'sometimes' cannot be read" in p for p in problems), problems


def test_node_section_for_unknown_kind_is_warned(write_config, caplog):
    text = VALID_CONFIG + "\n[cluster/slurm/storage]\nflavor = huge\n"
    path = write_config(text)
    config = load_config(path)
    assert "slurm" in config.templates  # not fatal
    assert "storage" not in config.templates["slurm"].kinds
    assert f"{path}:{header_line(text, 'cluster/slurm/storage')}: [cluster/slurm/storage]: [cluster/slurm] " \
           "has no storage_nodes key; this section is ignored" in _warning_texts(caplog)


def test_node_section_for_unknown_cluster_is_warned(write_config, caplog):
    text = VALID_CONFIG + "\n[cluster/slrum/compute]\nflavor = huge\n"
    config = _load(write_config, text)
    assert list(config.templates) == ["slurm"]
    assert any("[cluster/slrum/compute]: there is no [cluster/slrum] section for it; ignored" in w
               for w in _warning_texts(caplog))


# -- legacy and unknown keys -----------------------------------------------------


def test_setup_is_accepted_for_setup_provider(write_config, caplog):
    text = drop_key(VALID_CONFIG, CLUSTER, "setup_provider")
    text = set_key(text, CLUSTER, "setup", "ansible-slurm")
    template = _load(write_config, text).templates["slurm"]
    assert template.setup_name == "ansible-slurm"
    deprecations = [w for w in _warning_texts(caplog) if "deprecated" in w]
    assert len(deprecations) == 1
    assert "\n" not in deprecations[0]
    assert "key 'setup' is deprecated; write 'setup_provider' instead" in deprecations[0]


def test_setup_provider_wins_over_setup(write_config, caplog):
    text = VALID_CONFIG + "\n[setup/other]\nprovider = ansible\nfrontend_groups = a\ncompute_groups = b\n"
    text = set_key(text, CLUSTER, "setup", "other")
    template = _load(write_config, text).templates["slurm"]
    assert template.setup_name == "ansible-slurm"
    assert any("both 'setup' and 'setup_provider' are given; 'setup_provider' is used" in w
               for w in _warning_texts(caplog))


def test_seed_style_counts_when_groups_exist(write_config, caplog):
    """The seed's aws-slurm example: ``frontend=1``, ``compute=2``."""
    text = drop_key(drop_key(VALID_CONFIG, CLUSTER, "frontend_nodes"), CLUSTER, "compute_nodes")
    text = set_key(set_key(text, CLUSTER, "frontend", "1"), CLUSTER, "compute", "5")
    template = _load(write_config, text).templates["slurm"]
    assert {k: v.count for k, v in template.kinds.items()} == {"frontend": 1, "compute": 5}
    assert any("key 'compute' is deprecated; write 'compute_nodes' instead" in w
               for w in _warning_texts(caplog))


def test_seed_style_count_without_groups_is_an_unknown_key(write_config, caplog):
    text = set_key(VALID_CONFIG, CLUSTER, "storage", "3")
    template = _load(write_config, text).templates["slurm"]
    assert "storage" not in template.kinds
    assert any("unknown key 'storage' ignored" in w for w in _warning_texts(caplog))


def test_obsolete_frontend_class_is_warned_not_fatal(write_config, caplog):
    text = set_key(VALID_CONFIG, CLUSTER, "frontend_class", "frontend")
    path = write_config(text)
    config = load_config(path)
    assert "slurm" in config.templates
    assert "frontend_class" not in config.templates["slurm"].cluster
    assert f"{path}:{key_line(text, CLUSTER, 'frontend_class')}: [{CLUSTER}] frontend_class: key " \
           "'frontend_class' is no longer used" in "\n".join(_warning_texts(caplog))


@pytest.mark.parametrize("section, typo, hint", [
    (CLUSTER, "flavour", "flavor"),
    (CLUSTER, "security_groups", "security_group"),
    ("login/gc3-user", "user_key_pubic", "user_key_public"),
    ("cloud/hobbes", "ec2_regoin", "ec2_region"),
    (SETUP, "playbook", "playbook_path"),
])
def test_unknown_key_is_warned_with_a_hint(write_config, caplog, section, typo, hint):
    text = set_key(VALID_CONFIG, section, typo, "x")
    path = write_config(text)
    config = load_config(path)
    assert "slurm" in config.templates
    assert f"{path}:{key_line(text, section, typo)}: [{section}] {typo}: unknown key '{typo}' ignored " \
           f"(did you mean '{hint}'?)" in _warning_texts(caplog)


def test_unknown_keys_through_the_cli(cli, write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "flavour", "x")
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 0
    assert list(listed(data)) == ["slurm"]
    assert "unknown key 'flavour' ignored (did you mean 'flavor'?)" in result.stderr


def test_vars_and_groups(write_config):
    text = set_key(VALID_CONFIG, SETUP, "global_var_multiuser_cluster", "yes")
    text = set_key(text, SETUP, "compute_var_slots", "8")
    text = set_key(text, CLUSTER, "global_var_site", "zurich")
    template = _load(write_config, text).templates["slurm"]
    assert template.global_vars == {"multiuser_cluster": "yes", "site": "zurich"}
    assert template.kinds["compute"].vars == {"slots": "8"}
    assert template.kinds["frontend"].vars == {}
    assert template.kinds["frontend"].groups == ["slurm_master"]


def test_frontend_is_ssh_to_or_first_kind(write_config):
    assert _load(write_config, VALID_CONFIG).templates["slurm"].frontend_kind() == "frontend"
    text = drop_key(VALID_CONFIG, CLUSTER, "ssh_to")
    assert _load(write_config, text).templates["slurm"].frontend_kind() == "compute"


def test_config_template_lookup(write_config):
    text = VALID_CONFIG + "\n[cluster/broken]\ncloud = hobbes\n"
    config = _load(write_config, text)
    assert config.template("slurm").name == "slurm"
    with pytest.raises(ConfigurationError) as err:
        config.template("broken")
    assert "has errors" in str(err.value) and err.value.problems
    with pytest.raises(ConfigurationError, match="did you mean slurm"):
        config.template("slurn")


# -- --nodes overrides ---------------------------------------------------------


@pytest.mark.parametrize("text, counts", [
    ("10:compute,1:frontend", {"compute": 10, "frontend": 1}),
    ("3:compute", {"compute": 3}),
    (" 2 : compute , 1:frontend ", {"compute": 2, "frontend": 1}),
    ("1:compute,2:compute", {"compute": 3}),
    ("0:gpu-big", {"gpu-big": 0}),
])
def test_node_counts_parses(text, counts):
    assert node_counts(text) == counts


@pytest.mark.parametrize("text", ["bad", "10", "compute:10", "", "1:", ":compute", "1:compute,",
                                  "-1:compute", "1.5:compute", "1:comp ute"])
def test_node_counts_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not N:KIND"):
        node_counts(text)


def test_with_node_counts(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "compute_min_nodes", "2")
    template = _load(write_config, text).templates["slurm"]
    bigger = template.with_node_counts(node_counts("10:compute"))
    assert bigger.kinds["compute"].count == 10 and bigger.kinds["frontend"].count == 1
    assert template.kinds["compute"].count == 2  # the template itself is unchanged
    smaller = template.with_node_counts({"compute": 1})
    assert smaller.kinds["compute"].min_count == 1
    assert smaller.summary()["nodes"] == {"compute": 1, "frontend": 1}


def test_with_node_counts_unknown_kind(write_config):
    template = _load(write_config, VALID_CONFIG).templates["slurm"]
    with pytest.raises(UsageError) as err:
        template.with_node_counts({"gpu": 2})
    assert "no node kind 'gpu'" in str(err.value)
    assert "its kinds are: compute, frontend" in str(err.value)
    assert err.value.exit_status == 2


def test_start_nodes_bad_through_cli(cli, write_config):
    result = cli("-c", str(write_config(VALID_CONFIG)), "start", "--nodes", "bad", "slurm")
    no_traceback(result)
    assert result.returncode == 2
    assert "argument --nodes: 'bad' is not N:KIND" in result.stderr
    assert "usage: elasticcluster start" in result.stderr


def test_start_nodes_unknown_kind_through_cli(cli, write_config, tmp_path):
    storage = tmp_path / "storage"
    result = cli("-c", str(write_config(VALID_CONFIG)), "-s", str(storage), "start", "--nodes", "3:gpu", "slurm")
    no_traceback(result)
    assert result.returncode == 2
    assert "--nodes: template 'slurm' has no node kind 'gpu'; its kinds are: compute, frontend" in result.stderr
    assert not storage.exists() or not any(storage.iterdir())
