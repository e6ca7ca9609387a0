"""Keys that depend on the cloud's driver, refused where the user sees them (issue 10, item 3).

``list-templates`` checks a pass-through cloud section against its driver's
constructor, and cluster sections against the driver's ``create_node``: every
problem is ``FILE:LINE: [section] key ...`` with what the driver takes, before
anything is started; what is accepted reaches the driver typed by its
signature. No cloud is contacted (nothing here builds a driver).
"""
from __future__ import annotations

import json

import pytest

from elasticcluster.config import load_config
from tests.config.cfgtools import header_line, key_line, list_json, listed, no_traceback, skipped

LOGIN = """\
[login/ubuntu]
image_user = ubuntu
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/slurm]
frontend_groups = slurm_master
compute_groups = slurm_clients
"""


def config(cloud: str, cluster: str = "", kind: str = "") -> str:
    text = f"""\
[cloud/mine]
{cloud.strip()}

{LOGIN}
[cluster/c]
cloud = mine
login = ubuntu
setup_provider = slurm
image_id = ubuntu-22-04
flavor = small
frontend_nodes = 1
compute_nodes = 2
ssh_to = frontend
{cluster.strip()}
"""
    if kind:
        text += f"\n[cluster/c/compute]\n{kind.strip()}\n"
    return text


def problems_of(write_config, text: str) -> tuple[str, list[str]]:
    path = write_config(text)
    found = load_config(path)
    assert "c" not in found.templates, "expected the template to be refused"
    return str(path), found.skipped["c"]


def template_of(write_config, text: str):
    found = load_config(write_config(text))
    assert "c" in found.templates, found.skipped
    return found.templates["c"]


# -- constructor keys of pass-through providers -------------------------------------------------


def test_misnamed_constructor_key_is_caught_by_list_templates(cli, write_config):
    text = config("provider = digitalocean\ntoken = do-secret-token\nlocation = nyc1")
    path = write_config(text)
    result, data = list_json(cli, path)
    no_traceback(result)
    assert result.returncode == 2
    problems = skipped(data)["c"]
    line = key_line(text, "cloud/mine", "token")
    assert f"{path}:{line}: [cloud/mine] token: unknown key 'token' for provider digitalocean; " \
           "DigitalOcean_v2_NodeDriver takes: required key; optional " in problems[0], problems
    assert f"{path}:{header_line(text, 'cloud/mine')}: [cloud/mine]: required key 'key' is missing" in problems[1]
    assert "do-secret-token" not in result.stdout + result.stderr


def test_region_on_digitalocean_points_at_location(write_config):
    path, problems = problems_of(write_config, config("provider = digitalocean\nkey = k\nregion = nyc1"))
    text = config("provider = digitalocean\nkey = k\nregion = nyc1")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{key_line(text, 'cloud/mine', 'region')}: [cloud/mine] region: "
                                  "DigitalOcean_v2_NodeDriver refuses it (")
    assert problems[0].endswith("; to choose where nodes start, write location = ID or name")
    # and without region, the create call needs a location, which nothing gives
    text = config("provider = digitalocean\nkey = k")
    path, problems = problems_of(write_config, text)
    assert problems == [f"{path}:{header_line(text, 'cluster/c')}: [cluster/c]: DigitalOcean_v2_NodeDriver."
                        f"create_node needs a location for the {kind} nodes; add location = ID or name to "
                        f"[cloud/mine] (or to [cluster/c] or [cluster/c/{kind}])" for kind in ("compute", "frontend")]


def test_string_parameter_stays_text(write_config):
    """Linode's api_version is compared with the text '4.0': the float 4.0 picks no driver."""
    template = template_of(write_config, config("provider = linode\nkey = k\napi_version = 4.0\nlocation = us-east"))
    assert template.cloud["api_version"] == "4.0"
    from elasticcluster.cloud import build_driver

    driver = build_driver(template.provider, template.family, template.cloud)
    assert type(driver).__name__ == "LinodeNodeDriverV4"


def test_typed_constructor_value_that_cannot_be_read(write_config):
    text = config("provider = cloudstack\nkey = k\nsecret = s\nhost = cs.example.org\nport = eighty")
    path, problems = problems_of(write_config, text)
    assert problems == [f"{path}:{key_line(text, 'cloud/mine', 'port')}: [cloud/mine] port = 'eighty' cannot be "
                        "read; expected a whole number (CloudStackNodeDriver takes port)"]


def test_driver_that_cannot_get_the_key_onto_nodes_is_refused(write_config):
    text = config("provider = scaleway\nkey = access\nsecret = token")
    path, problems = problems_of(write_config, text)
    assert problems == [f"{path}:{key_line(text, 'cloud/mine', 'provider')}: [cloud/mine] provider = scaleway: "
                        "ScalewayNodeDriver.create_node has no way to put an SSH key on a node (no `auth` taking an "
                        "SSH key, no key-pair, public-key or user-data argument), so elasticcluster could never log "
                        "in to its nodes"]
    # the cloud section itself builds a driver: clusters once started on it can still be stopped
    assert load_config(path).cloud("mine").provider == "scaleway"


# -- create_node keys of cluster sections -----------------------------------------------------


def test_create_node_keys_are_typed_by_the_signature(write_config):
    cloud = "provider = cloudstack\nkey = k\nsecret = s\nhost = cs.example.org\nlocation = zone-1"
    template = template_of(write_config, config(
        cloud, "ex_rootdisksize = 40\nex_displayname = 007\n", kind="ex_start_vm = no\n"))
    frontend, compute = template.kinds["frontend"], template.kinds["compute"]
    # documented as str: kept as text (a number would be sent as 40.0, or "007" as 7)
    assert frontend.extra["create"] == {"ex_rootdisksize": "40", "ex_displayname": "007"}
    # nodes start when created unless a section says otherwise (a boolean, read as one)
    assert compute.extra["create"] == {"ex_rootdisksize": "40", "ex_displayname": "007", "ex_start_vm": False}


def test_key_elasticcluster_fills_is_refused(write_config):
    cloud = "provider = cloudstack\nkey = k\nsecret = s\nhost = cs.example.org"
    text = config(cloud, "ex_keyname = mine\n")
    path, problems = problems_of(write_config, text)
    assert problems == [f"{path}:{key_line(text, 'cluster/c', 'ex_keyname')}: [cluster/c] ex_keyname: "
                        "CloudStackNodeDriver.create_node's ex_keyname is set by elasticcluster (the SSH key); "
                        "remove it"]


def test_unknown_create_key_is_refused_listing_what_may_be_set(cli, write_config):
    cloud = "provider = vultr\nkey = k\nlocation = ams"
    text = config(cloud, kind="ex_enable_ipv7 = yes\n")
    path = write_config(text)
    result, data = list_json(cli, path)
    assert result.returncode == 2
    [problem] = skipped(data)["c"]
    assert problem.startswith(f"{path}:{key_line(text, 'cluster/c/compute', 'ex_enable_ipv7')}: "
                              "[cluster/c/compute] ex_enable_ipv7: not a parameter of VultrNodeDriverV2.create_node "
                              "(did you mean 'ex_enable_ipv6'?); VultrNodeDriverV2.create_node takes: ")
    assert "ex_ssh_key_ids" not in problem.split("takes: ")[1]  # that one is ours


def test_required_create_argument_that_nothing_sets(write_config):
    cloud = ("provider = azure\nsubscription_id = s\ntenant_id = t\nclient_id = c\nsecret = x\n"
             "location = westeurope")
    text = config(cloud)
    path, problems = problems_of(write_config, text)
    assert problems == [f"{path}:{header_line(text, 'cluster/c')}: [cluster/c]: AzureNodeDriver.create_node needs "
                        f"ex_resource_group, which nothing sets for the {kind} nodes; add ex_resource_group = ... "
                        f"to [cluster/c] or [cluster/c/{kind}]" for kind in ("compute", "frontend")]
    template = template_of(write_config, config(cloud, "ex_resource_group = my-group"))
    assert template.kinds["compute"].extra["create"] == {"ex_resource_group": "my-group"}


def test_secret_create_argument_stays_out_of_the_node(write_config, monkeypatch):
    monkeypatch.setenv("ROOT_PASS", "s3cr3t-root")
    text = config("provider = linode\nkey = k\nlocation = us-east", "root_pass = ${ROOT_PASS}")
    found = load_config(write_config(text))
    frontend = found.templates["c"].kinds["frontend"]
    assert frontend.create_secrets == {"root_pass": "s3cr3t-root"}
    assert "s3cr3t-root" not in json.dumps(frontend.extra)
    assert frontend.extra["create_secrets"] == {"template": "c", "keys": ["root_pass"]}


def test_driver_argument_named_like_our_own_key_is_not_taken(write_config):
    """Gandi's create_node takes `login`: the cluster's `login` names a [login/NAME] section."""
    template = template_of(write_config, config("provider = gandi\nkey = k\nlocation = FR-SD2"))
    assert "create" not in template.kinds["frontend"].extra


# -- the keys of ElastiCluster 1.3 ------------------------------------------------------------------


GCE = """\
provider = google
gce_client_id = 1234.apps.googleusercontent.com
gce_client_secret = gce-secret
gce_project_id = my-project
"""


def test_google_13_keys_are_accepted(write_config):
    template = template_of(write_config, config(GCE, """\
boot_disk_type = pd-ssd
boot_disk_size = 50
tags = http-server, https-server
scheduling = preemptible
allow_project_ssh_keys = no
""", kind="accelerator_count = 1\naccelerator_type = nvidia-tesla-t4\nlocation = europe-west1-b\n"))
    compute = template.kinds["compute"]
    assert {k: compute.extra[k] for k in ("boot_disk_type", "boot_disk_size", "tags", "scheduling",
                                          "accelerator_count", "accelerator_type", "location")} == {
        "boot_disk_type": "pd-ssd", "boot_disk_size": 50, "tags": ["http-server", "https-server"],
        "scheduling": "preemptible", "accelerator_count": 1, "accelerator_type": "nvidia-tesla-t4",
        "location": "europe-west1-b"}


@pytest.mark.parametrize("key, value, why", [
    ("min_cpu_platform", "Intel Skylake", "libcloud's GCE driver cannot ask for a minimum CPU platform"),
    ("availability_zone", "us-central1-b", "on Google Compute Engine the zone is `zone` in the cloud section"),
])
def test_google_keys_that_cannot_reach_the_driver_are_refused(write_config, key, value, why):
    text = config(GCE, f"{key} = {value}")
    path, problems = problems_of(write_config, text)
    assert problems[0].startswith(f"{path}:{key_line(text, 'cluster/c', key)}: [cluster/c] {key}: not used on "
                                  f"provider google: {why}"), problems


def test_unmapped_13_key_on_a_pass_through_provider_is_refused(write_config):
    text = config("provider = vultr\nkey = k\nlocation = ams", "boot_disk_size = 40")
    path, problems = problems_of(write_config, text)
    assert problems[0].startswith(
        f"{path}:{key_line(text, 'cluster/c', 'boot_disk_size')}: [cluster/c] boot_disk_size: not used on provider "
        "vultr (provider vultr has no mapping file saying what boot_disk_size becomes); remove it, or set the "
        "driver's own argument (VultrNodeDriverV2.create_node takes: "), problems


def test_ec2_13_keys_are_accepted_and_gpu_keys_refused(write_config):
    ec2 = ("provider = ec2_boto\nec2_url = https://ec2.us-east-1.amazonaws.com\nec2_access_key = A\n"
           "ec2_secret_key = S\nec2_region = us-east-1\nvpc = vpc-123\ninstance_profile = nodes\nprice = 0.5")
    template = template_of(write_config, config(ec2, "boot_disk_size = 30\navailability_zone = us-east-1b"))
    assert template.cloud["vpc"] == "vpc-123" and template.cloud["price"] == 0.5
    assert template.kinds["frontend"].extra["availability_zone"] == "us-east-1b"
    text = config(ec2, "accelerator_count = 1")
    path, problems = problems_of(write_config, text)
    assert problems[0] == (f"{path}:{key_line(text, 'cluster/c', 'accelerator_count')}: [cluster/c] "
                           "accelerator_count: not used on provider ec2_boto: EC2 has no separate accelerators: "
                           "choose a GPU instance type as flavor (p3.2xlarge, g5.xlarge, ...)")


def test_image_userdata_where_the_driver_takes_none_is_refused(write_config):
    text = config("provider = upcloud\nusername = u\npassword = p\nlocation = fi-hel1",
                  "image_userdata = touch /tmp/was-here")
    path, problems = problems_of(write_config, text)
    assert problems[0] == (f"{path}:{key_line(text, 'cluster/c', 'image_userdata')}: [cluster/c] image_userdata: "
                           "UpcloudDriver.create_node takes no user data; remove it (or run the script from the "
                           "setup playbook)")


def test_security_group_where_the_driver_has_none_is_said(cli, write_config):
    text = config("provider = vultr\nkey = k\nlocation = ams", "security_group = web")
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 0 and "c" in listed(data)
    assert result.stderr.count("security_group = web: VultrNodeDriverV2 takes no security group; ignored") == 1
    # ElastiCluster 1.3's default value asks for nothing: nothing to say
    result, data = list_json(cli, write_config(text.replace("security_group = web", "security_group = default")))
    assert result.returncode == 0 and "c" in listed(data) and "security_group" not in result.stderr


def test_nodes_min_spelling_of_13(write_config):
    text = config("provider = vultr\nkey = k\nlocation = ams", "compute_nodes_min = 1")
    template = template_of(write_config, text)
    assert template.kinds["compute"].min_count == 1 and template.kinds["frontend"].min_count == 1
    path, problems = problems_of(write_config, config("provider = vultr\nkey = k\nlocation = ams",
                                                      "compute_nodes_min = 3"))
    assert "compute_min_nodes = 3 is more than compute_nodes = 2; expected at most 2" in problems[0]


@pytest.mark.parametrize("ssh_to, kind", [("frontend001", "frontend"), ("compute002", "compute")])
def test_ssh_to_may_name_a_node(write_config, ssh_to, kind):
    text = config("provider = vultr\nkey = k\nlocation = ams").replace("ssh_to = frontend", f"ssh_to = {ssh_to}")
    assert template_of(write_config, text).frontend_kind() == kind
