"""Each section type's schema: required keys, types, and what the messages say."""
from __future__ import annotations

import re

import pytest

from elasticcluster.config import load_config
from tests.config.cfgtools import (
    drop_key,
    header_line,
    key_line,
    list_json,
    listed,
    no_traceback,
    set_key,
    skipped,
    warnings,
)
from tests.conftest import VALID_CONFIG

LOGIN = "login/gc3-user"
CLUSTER = "cluster/slurm"
CLOUD = "cloud/hobbes"

#: a second, valid template in the same file: it must still list when [cluster/slurm] is broken
OTHER_TEMPLATE = """
[login/other]
image_user = centos
user_key_name = other
user_key_private = ~/.ssh/other
user_key_public = ~/.ssh/other.pub

[setup/other]
provider = ansible
compute_groups = slurm_clients

[cloud/other]
provider = ec2
ec2_access_key = AKIDOTHER
ec2_secret_key = other-secret-value

[cluster/other]
cloud = other
login = other
setup_provider = other
image_id = ami-other
flavor = m1.large
compute_nodes = 3
"""


def _problems_of(path, name="slurm"):
    config = load_config(path)
    assert name not in config.templates
    return config.skipped[name]


# -- required keys ----------------------------------------------------------


@pytest.mark.parametrize("key", ["image_user", "user_key_name", "user_key_private", "user_key_public"])
def test_login_required_key_missing(write_config, key):
    text = drop_key(VALID_CONFIG, LOGIN, key)
    path = write_config(text)
    problems = _problems_of(path)
    expected_head = f"{path}:{header_line(text, LOGIN)}: [{LOGIN}]"
    matching = [p for p in problems if f"required key '{key}' is missing" in p]
    assert len(matching) == 1, problems
    assert matching[0].startswith(expected_head)
    assert "expected " in matching[0]


@pytest.mark.parametrize("key", ["cloud", "login", "setup_provider"])
def test_cluster_required_link_missing(write_config, key):
    text = drop_key(VALID_CONFIG, CLUSTER, key)
    path = write_config(text)
    problems = _problems_of(path)
    matching = [p for p in problems if f"required key '{key}' is missing" in p]
    assert len(matching) == 1, problems
    assert matching[0].startswith(f"{path}:{header_line(text, CLUSTER)}: [{CLUSTER}]")
    assert re.search(r"expected the name of a \[\w+/NAME\] section", matching[0])


@pytest.mark.parametrize("key", ["image_id", "flavor"])
def test_cluster_node_key_missing_names_both_places_to_put_it(write_config, key):
    text = drop_key(VALID_CONFIG, CLUSTER, key)
    path = write_config(text)
    problems = _problems_of(path)
    # one problem per kind of node that lacks it
    for kind in ("frontend", "compute"):
        matching = [p for p in problems if f"required key '{key}' is missing for the {kind} nodes" in p]
        assert len(matching) == 1, problems
        assert matching[0].startswith(f"{path}:{header_line(text, CLUSTER)}: [{CLUSTER}]")
        assert f"in [{CLUSTER}] or [{CLUSTER}/{kind}]" in matching[0]
        assert "expected " in matching[0]


def test_node_key_given_only_in_kind_sections_is_enough(write_config):
    text = drop_key(VALID_CONFIG, CLUSTER, "flavor")
    text += "\n[cluster/slurm/frontend]\nflavor = big\n\n[cluster/slurm/compute]\nflavor = small\n"
    config = load_config(write_config(text))
    assert config.skipped == {}
    kinds = config.templates["slurm"].kinds
    assert (kinds["frontend"].flavor, kinds["compute"].flavor) == ("big", "small")


def test_cloud_provider_missing(write_config):
    text = drop_key(VALID_CONFIG, CLOUD, "provider")
    path = write_config(text)
    problems = _problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{header_line(text, CLOUD)}: [{CLOUD}]")
    assert "required key 'provider' is missing" in problems[0]
    assert "expected a libcloud compute provider name" in problems[0]


@pytest.mark.parametrize("key", ["ec2_access_key", "ec2_secret_key"])
def test_cloud_credential_missing_mentions_environment_fallback(write_config, key):
    text = drop_key(VALID_CONFIG, CLOUD, key)
    path = write_config(text)
    problems = _problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{header_line(text, CLOUD)}: [{CLOUD}]")
    assert f"required key '{key}' is missing" in problems[0]
    variable = {"ec2_access_key": "AWS_ACCESS_KEY_ID", "ec2_secret_key": "AWS_SECRET_ACCESS_KEY"}[key]
    assert f"or set {variable}" in problems[0]


def test_no_kind_nodes_at_all(write_config):
    text = drop_key(drop_key(VALID_CONFIG, CLUSTER, "frontend_nodes"), CLUSTER, "compute_nodes")
    text = drop_key(text, CLUSTER, "ssh_to")
    path = write_config(text)
    problems = _problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{header_line(text, CLUSTER)}: [{CLUSTER}]")
    assert "no KIND_nodes key" in problems[0] and "expected at least one" in problems[0]


def test_only_min_nodes_is_no_kind_nodes(write_config):
    """Regression: a cluster with KIND_min_nodes but no KIND_nodes crashed list-templates."""
    text = drop_key(drop_key(VALID_CONFIG, CLUSTER, "frontend_nodes"), CLUSTER, "compute_nodes")
    text = set_key(drop_key(text, CLUSTER, "ssh_to"), CLUSTER, "compute_min_nodes", "1")
    problems = _problems_of(write_config(text))
    assert any("no KIND_nodes key" in p for p in problems), problems


# -- wrong types --------------------------------------------------------------


@pytest.mark.parametrize("section, key, value, says", [
    (CLUSTER, "compute_nodes", "two", "cannot be read; expected a whole number from 0 to 10000"),
    (CLUSTER, "compute_nodes", "1000000000", "is above the maximum 10000; expected a whole number from 0 to 10000"),
    (CLUSTER, "frontend_nodes", "-1", "is below the minimum 0; expected a whole number"),
    (CLUSTER, "frontend_nodes", "", "cannot be read; expected a whole number"),
    (LOGIN, "image_sudo", "maybe", "cannot be read; expected yes or no"),
    (LOGIN, "ssh_port", "99999", "is above the maximum 65535; expected a TCP port number"),
    (LOGIN, "ssh_port", "ssh", "cannot be read; expected a TCP port number"),
    (CLUSTER, "startup_timeout", "0", "is below the minimum 1"),
    ("setup/ansible-slurm", "provider", "chef", "is not one of ansible; expected ansible"),
    (CLOUD, "ec2_url", "not a url", "does not have the expected form; expected the EC2 endpoint URL"),
    (CLOUD, "request_floating_ip", "perhaps", "cannot be read; expected"),
])
def test_wrong_type_names_file_line_section_key_and_expectation(write_config, section, key, value, says):
    text = set_key(VALID_CONFIG, section, key, value)
    path = write_config(text)
    problems = _problems_of(path)
    assert len(problems) == 1, problems
    head = f"{path}:{key_line(text, section, key)}: [{section}] {key} = {value!r} "
    assert problems[0].startswith(head), problems[0]
    assert says in problems[0]


def test_types_are_converted(write_config, home):
    text = set_key(VALID_CONFIG, LOGIN, "image_sudo", "no")
    text = set_key(text, LOGIN, "ssh_port", " 2222 ")
    text = set_key(text, CLUSTER, "network_ids", "net-a, net-b ,,net-c")
    template = load_config(write_config(text)).templates["slurm"]
    assert template.login["image_sudo"] is False
    assert template.login["ssh_port"] == 2222
    assert template.kinds["compute"].count == 2 and template.kinds["frontend"].count == 1
    assert template.kinds["compute"].network_ids == ["net-a", "net-b", "net-c"]
    assert template.setup["compute_groups"] == ["slurm_clients"]
    # defaults are filled in
    assert template.cluster["startup_timeout"] == 600
    assert template.login["image_user_sudo"] == "root"


def test_login_defaults_when_optional_keys_absent(write_config):
    text = drop_key(drop_key(VALID_CONFIG, LOGIN, "image_sudo"), LOGIN, "image_user_sudo")
    login = load_config(write_config(text)).templates["slurm"].login
    assert login["image_sudo"] is True
    assert login["image_user_sudo"] == "root"
    assert login["ssh_port"] == 22


# -- the CLI: skipped templates, valid ones still list, exit status -------------


def test_broken_template_is_skipped_and_the_valid_one_still_lists(cli, write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "compute_nodes", "two")
    text = set_key(text, LOGIN, "image_sudo", "maybe") + OTHER_TEMPLATE
    path = write_config(text)
    result, data = list_json(cli, path)
    assert result.returncode == 0
    assert list(listed(data)) == ["other"]
    problems = skipped(data)["slurm"]
    assert f"{path}:{key_line(text, CLUSTER, 'compute_nodes')}: [{CLUSTER}] compute_nodes = 'two'" \
        in "\n".join(problems)
    assert any(f"[{LOGIN}] image_sudo = 'maybe'" in p for p in problems)
    # the warning on stderr says the template is skipped and repeats each problem
    assert "ignoring cluster template 'slurm'" in result.stderr
    for problem in problems:
        assert problem in result.stderr
    assert "other" not in " ".join(warnings(result.stderr))


def test_plain_output_lists_valid_templates(cli, write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "compute_nodes", "two") + OTHER_TEMPLATE
    result = cli("-c", str(write_config(text)), "list-templates")
    no_traceback(result)
    assert result.returncode == 0
    assert "1 cluster template found." in result.stdout
    assert "name:     other" in result.stdout
    assert "compute nodes: 3" in result.stdout
    assert "slurm" not in result.stdout


def test_no_valid_template_exits_2(cli, write_config):
    text = set_key(VALID_CONFIG, LOGIN, "ssh_port", "99999")
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 2
    assert data["templates"] == []
    assert list(skipped(data)) == ["slurm"]
    assert "ERROR: no valid cluster template" in result.stderr


def test_every_problem_is_reported_not_only_the_first(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "compute_nodes", "two")
    text = set_key(text, LOGIN, "ssh_port", "0")
    text = drop_key(text, LOGIN, "user_key_name")
    text = drop_key(text, CLOUD, "ec2_secret_key")
    problems = _problems_of(write_config(text))
    assert len(problems) == 4, problems
    for section in (CLUSTER, LOGIN, CLOUD):
        assert any(f"[{section}]" in p for p in problems)


def test_no_traceback_even_for_many_bad_values(cli, write_config):
    text = VALID_CONFIG
    for section, key, value in [(CLUSTER, "compute_nodes", "x"), (CLUSTER, "frontend_nodes", "1.5"),
                                (LOGIN, "image_sudo", ""), (LOGIN, "ssh_port", "-3"),
                                (CLOUD, "ec2_url", ""), (CLUSTER, "ssh_to", "")]:
        text = set_key(text, section, key, value)
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 2
    assert len(skipped(data)["slurm"]) >= 5
