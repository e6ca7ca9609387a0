"""Cloud sections: provider families (drivers/*.toml), libcloud pass-through, driver = module:Class."""
from __future__ import annotations

import logging

import pytest

from elasticcluster import cloud_catalog
from elasticcluster.config import load_config
from tests.config.cfgtools import key_line, list_json, listed, skipped
from tests.conftest import VALID_CONFIG

REST = VALID_CONFIG[VALID_CONFIG.index("[login/"):]  # login, setup and cluster sections


def _with_cloud(cloud: str) -> str:
    """VALID_CONFIG with its [cloud/hobbes] section replaced by ``cloud``."""
    return "[cloud/hobbes]\n" + cloud.strip() + "\n\n" + REST


def _warnings(caplog):
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize("wrong, close", [("ec3", "ec2"), ("opnestack", "openstack"), ("gooogle", "google")])
def test_unknown_provider_suggests_close_names(write_config, wrong, close):
    text = _with_cloud(f"provider = {wrong}\nkey = x")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{key_line(text, 'cloud/hobbes', 'provider')}: [cloud/hobbes] "
                                  f"provider = {wrong!r} is not a known cloud provider (did you mean ")
    suggested = problems[0].split("did you mean ")[1].split("?")[0].split(", ")
    assert close in suggested
    assert "or give driver = module:Class" in problems[0]


def test_unknown_provider_through_the_cli(cli, write_config):
    result, data = list_json(cli, write_config(_with_cloud("provider = ec3")))
    assert result.returncode == 2
    assert "did you mean ec2" in skipped(data)["slurm"][0]


def test_provider_far_from_anything_has_no_hint(write_config):
    problems = load_config(write_config(_with_cloud("provider = zzqqxxyy"))).skipped["slurm"]
    assert "not a known cloud provider; expected one of" in problems[0]


def test_libcloud_provider_is_passed_through(write_config):
    text = _with_cloud("provider = digitalocean\nkey = do-token-value\napi_version = v2\nlocation = ams3")
    config = load_config(write_config(text))
    template = config.templates["slurm"]
    assert template.provider == "digitalocean"
    assert template.family.passthrough and template.family.libcloud == "digitalocean"
    assert {k: template.cloud[k] for k in ("key", "api_version", "location")} == \
        {"key": "do-token-value", "api_version": "v2", "location": "ams3"}
    assert "do-token-value" in config.secrets  # 'key' counts as a secret


@pytest.mark.parametrize("provider, location", [("linode", "us-east"), ("vultr", "ams"),
                                                ("equinixmetal", "ny5"), ("outscale", None)])
def test_other_libcloud_names_are_accepted(write_config, provider, location):
    if provider not in cloud_catalog.libcloud_providers():
        pytest.skip(f"this libcloud has no {provider}")
    # the first three create nodes in a location that nothing else gives (outscale takes none)
    text = _with_cloud(f"provider = {provider}\nkey = k" + (f"\nlocation = {location}" if location else ""))
    template = load_config(write_config(text)).templates["slurm"]
    assert template.provider == provider


def test_driver_module_class(write_config):
    text = _with_cloud("provider = mycloud\ndriver = tests.cloud.data.custom_driver:TinyNodeDriver\n"
                       "api_token = tok")
    template = load_config(write_config(text)).templates["slurm"]
    assert template.provider == "mycloud"
    assert template.family.driver == "tests.cloud.data.custom_driver:TinyNodeDriver"
    assert template.cloud["api_token"] == "tok"


def test_driver_module_class_that_cannot_be_loaded(write_config):
    text = _with_cloud("provider = mycloud\ndriver = mypackage.clouds:MyNodeDriver\nendpoint = https://x.example")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, 'cloud/hobbes', 'driver')}: [cloud/hobbes] driver = "
                        "mypackage.clouds:MyNodeDriver: cannot load it (No module named 'mypackage'); expected "
                        "package.module:NodeDriverClass importable by this Python"]


def test_driver_for_a_known_name_keeps_its_keys(write_config):
    """``driver =`` beside a mapped provider swaps the driver class; the keys are still checked."""
    text = VALID_CONFIG.replace("ec2_region = nova", "ec2_region = nova\ndriver = mypackage.clouds:FakeEC2")
    problems = load_config(write_config(text)).skipped["slurm"]
    assert [p for p in problems if "cannot load it" in p] == problems and len(problems) == 1, problems
    text = text.replace("ec2_access_key = AKIDEXAMPLE\n", "")
    problems = load_config(write_config(text)).skipped["slurm"]
    assert any("required key 'ec2_access_key' is missing" in p for p in problems), problems


def test_driver_of_wrong_form(write_config):
    text = _with_cloud("provider = mycloud\ndriver = mypackage.clouds.MyNodeDriver")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, 'cloud/hobbes', 'driver')}: [cloud/hobbes] driver = "
                        "'mypackage.clouds.MyNodeDriver' does not have the expected form; "
                        "expected module:Class of a libcloud NodeDriver"]


SEED_CLOUDS = {
    "ec2_boto": ("ec2", """
provider = ec2_boto
ec2_url = https://ec2.us-east-1.amazonaws.com
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = ec2-secret-value
ec2_region = us-east-1
request_floating_ip = True
"""),
    "google": ("gce", """
provider = google
gce_client_id = 1234.apps.googleusercontent.com
gce_client_secret = gce-secret-value
gce_project_id = my-project
"""),
    "openstack": ("openstack", """
provider = openstack
auth_url = https://keystone.example.org:5000/v2.0
username = me
password = os-secret-value
project_name = science
region_name = RegionOne
request_floating_ip = yes
"""),
}


@pytest.mark.parametrize("seed_name", sorted(SEED_CLOUDS))
def test_seed_provider_names_and_keys(write_config, caplog, seed_name):
    family, cloud = SEED_CLOUDS[seed_name]
    config = load_config(write_config(_with_cloud(cloud)))
    assert config.skipped == {}
    template = config.templates["slurm"]
    assert template.provider == seed_name
    assert template.family.name == family and not template.family.passthrough
    given = dict(line.split(" = ", 1) for line in cloud.strip().splitlines())
    for key in given:
        assert key in template.cloud
    if "request_floating_ip" in given:
        assert template.cloud["request_floating_ip"] is True
    secret = f"{seed_name.split('_')[0].replace('google', 'gce').replace('openstack', 'os')}-secret-value"
    assert secret in config.secrets
    assert "unknown key" not in _warnings(caplog)


def test_seed_defaults_are_filled(write_config):
    cloud = load_config(write_config(_with_cloud(SEED_CLOUDS["google"][1]))).templates["slurm"].cloud
    assert cloud["zone"] == "us-central1-a"


def test_tenant_name_is_accepted_for_project_name(write_config, caplog):
    text = _with_cloud(SEED_CLOUDS["openstack"][1].replace("project_name", "tenant_name"))
    path = write_config(text)
    template = load_config(path).templates["slurm"]
    assert template.cloud["project_name"] == "science"
    assert "tenant_name" not in template.cloud
    line = key_line(text, "cloud/hobbes", "tenant_name")
    assert f"{path}:{line}: [cloud/hobbes] tenant_name: key 'tenant_name' is deprecated; write " \
           "'project_name' instead" in _warnings(caplog)


@pytest.mark.parametrize("cloud, key", [
    (SEED_CLOUDS["ec2_boto"][1] + "auto_ip_assignment = True\n", "auto_ip_assignment"),
    (SEED_CLOUDS["openstack"][1] + "nova_api_version = 2\n", "nova_api_version"),
    (SEED_CLOUDS["google"][1] + "noauth_local_webserver = yes\n", "noauth_local_webserver"),
])
def test_obsolete_cloud_keys_are_warned_not_fatal(write_config, caplog, cloud, key):
    template = load_config(write_config(_with_cloud(cloud))).templates["slurm"]
    assert key not in template.cloud
    assert f"key '{key}' is no longer used" in _warnings(caplog)


def test_allowed_values(write_config):
    cloud = SEED_CLOUDS["openstack"][1] + "identity_api_version = 4\n"
    problems = load_config(write_config(_with_cloud(cloud))).skipped["slurm"]
    assert len(problems) == 1
    assert "identity_api_version = '4' is not one of 2, 2.0, 3; expected the Keystone API version" in problems[0]


def test_every_mapping_file_loads_and_names_are_unique():
    families = cloud_catalog.mapped_families()
    assert {"ec2", "ec2_boto", "gce", "google", "openstack", "local", "azure", "opennebula"} <= set(families)
    for name, family in families.items():
        assert name in family.names
        for spec in family.keys.values():
            assert spec.type in ("string", "url", "path", "integer", "number", "boolean", "list")


def test_local_provider_needs_no_credentials(write_config):
    template = load_config(write_config(_with_cloud("provider = local"))).templates["slurm"]
    assert template.family.driver == "elasticcluster.drivers.local:LocalNodeDriver"
    assert template.cloud["network"] == "elasticcluster"


def test_secret_of_an_invalid_cloud_is_never_shown(cli, write_config):
    cloud = SEED_CLOUDS["openstack"][1].replace("auth_url = https://", "auth_url = ") + "identity_api_version = 9\n"
    result, data = list_json(cli, write_config(_with_cloud(cloud)))
    assert result.returncode == 2
    problems = skipped(data)["slurm"]
    assert len(problems) == 2, problems
    assert "[cloud/hobbes] auth_url = 'keystone.example.org:5000/v2.0' does not have the expected form" \
        in problems[0] + problems[1]
    assert "[cloud/hobbes] identity_api_version = '9' is not one of" in problems[0] + problems[1]
    assert "os-secret-value" not in result.output


def test_mixed_providers_in_one_file(cli, write_config):
    text = VALID_CONFIG + """
[cloud/do]
provider = digitalocean
key = another-token
location = ams3

[cluster/droplets]
cloud = do
login = gc3-user
setup_provider = ansible-slurm
image_id = ubuntu-22-04-x64
flavor = s-1vcpu-1gb
compute_nodes = 4
"""
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 0
    assert {n: t["provider"] for n, t in listed(data).items()} == {"slurm": "ec2_boto", "droplets": "digitalocean"}
    assert "another-token" not in result.output
