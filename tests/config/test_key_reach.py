"""No key is accepted and then ignored (issue 10, "Done when").

The test walks every key the configuration schema accepts (the fixed keys of
login, setup, cluster and node sections, their patterns, and every key of
every ``drivers/*.toml``) and checks that each one reaches something:

* a driver argument: a constructor parameter, or a ``create_node`` argument,
  of the family's real libcloud driver class (read from its code);
* a playbook variable: the Ansible inventory of a cluster made from it;
* elasticcluster's own code, which reads it by name (a lifecycle or SSH
  setting: ``startup_timeout``, ``user_key_private``...);
* or a documented refusal: the key is refused (or said to be ignored) with
  the reason, where the user sees it.

The mapping files' other tables (floating IPs, security groups, listing,
create arguments) must name methods and arguments the driver really has.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from elasticcluster import cloud_catalog, driver_info
from elasticcluster.config import load_config, schema
from elasticcluster.config.cloud_keys import FAMILY_KEYS, LOCATION_KEYS

PACKAGE = Path(__file__).resolve().parents[2] / "elasticcluster"
#: the schema itself, and the checker: saying a key exists is not reading it
NOT_READERS = {"config/schema.py", "config/cloud_keys.py"}


def read_by_code(key: str) -> list[str]:
    """The modules of elasticcluster (beside the schema) that name ``key`` as a string."""
    pattern = re.compile(rf"""["']{re.escape(key)}["']""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative not in NOT_READERS and pattern.search(path.read_text()):
            found.append(relative)
    return found


def families() -> dict[str, cloud_catalog.CloudFamily]:
    return {family.name: family for family in cloud_catalog.mapped_families().values()}


def driver_of(family: cloud_catalog.CloudFamily):
    from elasticcluster.cloud import driver_class

    cls = driver_class(family.names[0], family)
    args = {"key": "k", **{k: v for k, v in family.constructor.items()}}
    try:
        cls = driver_info.concrete_class(cls, args)
    except Exception:  # noqa: BLE001 (the base class then)
        pass
    return cls, driver_info.read(cls)


# -- the fixed keys of login, setup and cluster sections -------------------------------------------

#: keys whose effect the family mapping decides (checked per family below)
PER_FAMILY = set(FAMILY_KEYS) | set(LOCATION_KEYS)


@pytest.mark.parametrize("section, key", sorted(
    (section, key) for section in ("login", "setup", "cluster", "node") for key in schema.FIXED[section]
    if key not in PER_FAMILY))
def test_fixed_key_is_read_by_code(section, key):
    if (section, key) == ("setup", "provider"):
        # the one setup provider: anything else is refused
        assert schema.FIXED["setup"]["provider"]["allowed"] == ["ansible"]
        return
    assert read_by_code(key), f"[{section}] {key} is accepted, and no code reads it"


#: a valid cloud section of each mapped family
CLOUDS = {
    "ec2": "provider = ec2_boto\nec2_access_key = A\nec2_secret_key = S\nec2_region = us-east-1",
    "gce": "provider = google\ngce_client_id = c\ngce_client_secret = s\ngce_project_id = p",
    "openstack": "provider = openstack\nauth_url = https://keystone.example.org:5000/v3\nusername = u\n"
                 "password = p\nproject_name = science",
    "azure": "provider = azure_arm\nsubscription_id = s\ntenant_id = t\nclient_id = c\nsecret = x",
    "opennebula": "provider = opennebula\nendpoint = https://one.example.org:2633/RPC2\nusername = u\n"
                  "password = p",
    "local": "provider = local",
}
SAMPLES = {"boot_disk_type": "ssd", "boot_disk_size": "40", "accelerator_type": "gpu", "accelerator_count": "1",
           "scheduling": "preemptible", "tags": "a, b", "allow_project_ssh_keys": "no",
           "min_cpu_platform": "Intel Skylake", "availability_zone": "zone-b", "location": "zone-a"}


def config_with(family_name: str, key: str) -> str:
    extra = "ex_resource_group = rg\n" if family_name == "azure" else ""
    return f"""\
[cloud/c]
{CLOUDS[family_name]}

[login/l]
image_user = u
user_key_name = k
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/s]
frontend_groups = g

[cluster/c]
cloud = c
login = l
setup_provider = s
image_id = 1
flavor = small
frontend_nodes = 1
{extra}{key} = {SAMPLES[key]}
"""


@pytest.mark.parametrize("family_name", sorted(CLOUDS))
@pytest.mark.parametrize("key", sorted(PER_FAMILY))
def test_node_key_reaches_the_driver_or_is_refused(family_name, key, write_config):
    family = families()[family_name]
    _, info = driver_of(family)
    found = load_config(write_config(config_with(family_name, key)))
    spec = family.node_keys.get(key)
    if isinstance(spec, dict) and spec.get("same_as"):
        spec = family.node_keys[spec["same_as"]]
    if key == "location" and spec is None:
        spec = "location" if "location" in info.create else None
    if spec is None or (isinstance(spec, dict) and spec.get("refused")):
        # refused where the user sees it, naming the key, with the reason
        assert "c" not in found.templates, f"{family_name}: {key} accepted, and nothing takes it"
        [problem] = [p for p in found.skipped["c"] if f"[cluster/c] {key}: not used on provider" in p]
        if spec is not None:
            assert problem.endswith(spec["refused"])
        return
    assert "c" in found.templates, found.skipped
    arg = spec if isinstance(spec, str) else spec["arg"]
    assert arg.partition(".")[0] in info.create, f"{family_name}: {key} -> {arg}, not an argument of " \
                                                f"{info.name}.create_node"
    for also in (spec.get("also", {}) if isinstance(spec, dict) else {}):
        assert also in info.create
    assert found.templates["c"].kinds["frontend"].extra[key] not in (None, "")


# -- the keys of cloud sections -------------------------------------------------------------------


@pytest.mark.parametrize("family_name, key", sorted(
    (family.name, key) for family in families().values() for key in family.keys))
def test_cloud_key_reaches_the_driver_or_the_code_or_is_refused(family_name, key):
    family = families()[family_name]
    spec = family.keys[key]
    if spec.obsolete:
        assert len(spec.obsolete) > 20, "an obsolete key says why it is no longer used"
        return
    cls, info = driver_of(family)
    if spec.arg == "@url":
        assert {"host", "port", "secure"} <= set(info.init), f"{key}: the URL's parts go to the constructor"
        return
    if spec.arg:
        assert spec.arg in info.init, f"{family_name}: {key} -> {spec.arg}, not a parameter of {info.name}"
        return
    if spec.create:
        arg = spec.create if isinstance(spec.create, str) else spec.create["arg"]
        assert arg in info.create, f"{family_name}: {key} -> {arg}, not an argument of {info.name}.create_node"
        for also in (spec.create.get("also", {}) if isinstance(spec.create, dict) else {}):
            assert also in info.create
        return
    assert read_by_code(key), f"[cloud/...] {key} of {family_name}.toml goes nowhere: no arg, no create, no code"


# -- the keys matched by patterns --------------------------------------------------------------


def test_pattern_keys_reach_the_inventory_and_the_node_counts(write_config, tmp_path):
    from elasticcluster.conf import Configurator
    from elasticcluster.inventory import SetupSpec, inventory_for
    from elasticcluster.repository import DiskRepository

    text = """\
[cloud/local]
provider = local

[login/l]
image_user = u
user_key_name = k
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/s]
frontend_groups = slurm_master
compute_groups = slurm_worker, ganglia_monitor
global_var_from_setup = 1
compute_var_slots = 4
ansible_forks = 20

[cluster/c]
cloud = local
login = l
setup_provider = s
image_id = debian
flavor = small
frontend_nodes = 1
compute_nodes = 3
compute_nodes_min = 2
global_var_from_cluster = two
"""
    config = load_config(write_config(text))
    template = config.templates["c"]
    assert template.kinds["compute"].min_count == 2  # KIND_nodes_min (1.3) and KIND_nodes
    cluster = Configurator(config, tmp_path / "storage", DiskRepository(tmp_path / "storage")).create_cluster("c")
    inventory = inventory_for(cluster, SetupSpec.from_template(template))["all"]
    assert inventory["vars"]["from_setup"] == "1" and inventory["vars"]["from_cluster"] == "two"
    assert inventory["hosts"]["compute001"]["slots"] == "4"
    assert set(inventory["children"]) == {"slurm_master", "slurm_worker", "ganglia_monitor"}
    # ansible_* settings become ANSIBLE_* environment variables of ansible-playbook
    assert read_by_code("ansible_") or any("ansible_" in (PACKAGE / p).read_text() for p in ("playbook.py",))


# -- the mapping files' tables name real driver code ---------------------------------------------------


@pytest.mark.parametrize("family_name", sorted(families()))
def test_mapping_tables_name_real_driver_methods_and_arguments(family_name):
    family = families()[family_name]
    cls, info = driver_of(family)
    for table in (family.floating_ip, family.security_group,
                  family.security_group.get("in_network", {})):
        for name, call in table.items():
            if name == "in_network":
                continue
            method = call if isinstance(call, str) else call["call"]
            assert callable(getattr(cls, method, None)), f"{family_name}: {name} calls {method}, which " \
                                                         f"{cls.__name__} does not have"
    if family.floating_ip:
        assert family.floating_ip.get("release"), "floating IPs are released with their node"
    for purpose, spec in family.create.items():
        if purpose in ("ssh_key", "start"):
            continue
        arg = spec if isinstance(spec, str) else spec["arg"]
        assert arg.partition(".")[0] in info.create, f"{family_name}: [create] {purpose} -> {arg}"
    import inspect

    listing = inspect.signature(cls.list_nodes).parameters
    for name in ("filter", "by_ids"):
        if family.listing.get(name):
            assert family.listing[name] in listing, f"{family_name}: [listing] {name}"
    # baked images: the calls that tag one and delete its snapshots, and create_image's arguments
    for name in ("tag", "delete_snapshot"):
        if family.images.get(name):
            method = family.images[name]["call"]
            assert callable(getattr(cls, method, None)), f"{family_name}: [images] {name} calls {method}"
    if family.images.get("create"):
        params = inspect.signature(cls.create_image).parameters
        assert set(family.images["create"]) <= set(params), f"{family_name}: [images] create"
