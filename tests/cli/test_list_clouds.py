"""list-clouds: every libcloud compute provider, mapped or not, reachable or not, and how (issue 10, item 6)."""
from __future__ import annotations

import json
import re

from libcloud.compute.providers import DRIVERS as ALL_DRIVERS

from elasticcluster.cloud_catalog import mapped_families
from tests.conftest import REPO


def _clouds(cli, *args):
    result = cli("list-clouds", "--json", *args)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def shipped() -> set[str]:
    """The providers libcloud ships: other tests of this process register drivers of their own
    (elasticcluster-NAME) in the same table; the CLI under test runs in a process of its own."""
    return {str(name) for name in ALL_DRIVERS if not str(name).startswith("elasticcluster-")}


def test_every_libcloud_provider_is_reported(cli):
    drivers = shipped()
    data = _clouds(cli)
    rows = {row["provider"]: row for row in data["providers"]}
    assert drivers <= set(rows)
    assert set(mapped_families()) <= set(rows)
    import libcloud

    assert data["libcloud"] == libcloud.__version__ and data["format"] == 1
    for name, family in mapped_families().items():
        assert rows[name]["mapped"] == f"{family.name}.toml"
    summary = data["summary"]
    libcloud_rows = [r for n, r in rows.items() if n in drivers]
    assert summary["libcloud_providers"] == len(libcloud_rows) == len(drivers)
    assert summary["reachable"] == sum(r["reachable"] for r in libcloud_rows)
    assert summary["unmapped"] == sum(1 for r in libcloud_rows if not r["mapped"])
    assert summary["unmapped_reachable"] == sum(r["reachable"] for r in libcloud_rows if not r["mapped"])
    for row in data["providers"]:
        assert row["reachable"] == (row["why"] == []), row
        assert (row["ssh_key"] == "none") <= (not row["reachable"]), row


def test_how_the_ssh_key_gets_there(cli):
    rows = {row["provider"]: row for row in _clouds(cli)["providers"]}
    # the ways of drivers/_conventions.toml, each chosen from what the driver's create_node takes
    assert rows["upcloud"]["ssh_key"].startswith("auth=NodeAuthSSHKey")
    assert rows["cloudstack"]["ssh_key"] == "key pair ex_keyname (imported under user_key_name)"
    assert rows["digitalocean"]["ssh_key"] == "key pair ids ex_ssh_key_ids (imported under user_key_name)"
    assert rows["linode"]["ssh_key"] == "public key in ex_authorized_keys"
    assert rows["equinixmetal"]["ssh_key"] == "cloud-init ssh_authorized_keys in cloud_init"
    assert rows["gce"]["ssh_key"] == "USER:KEY in ex_metadata.ssh-keys"  # the family's file says
    assert rows["digitalocean"]["location"] == "required"
    assert rows["digitalocean"]["required"] == ["key"]
    # a driver with no way to put the key on a node is not reachable, and says why
    assert not rows["scaleway"]["reachable"]
    assert rows["scaleway"]["why"][0].startswith("no way to put an SSH key on a node")
    assert rows["azure_arm"]["needs"] == ["ex_resource_group"]


def test_plain_output_and_patterns(cli):
    result = cli("list-clouds", "digital*", "vultr")
    assert result.returncode == 0, result.output
    assert re.match(r"\d+ of libcloud's \d+ compute providers are reachable by configuration alone", result.stdout)
    providers = re.findall(r"^provider:  (\S+)$", result.stdout, re.M)
    assert providers == ["digitalocean", "vultr"]


def test_readme_quotes_the_figures_of_list_clouds(cli):
    summary = _clouds(cli)["summary"]
    readme = (REPO / "README.rst").read_text()
    expected = (f"{summary['reachable']} of libcloud's {summary['libcloud_providers']} compute providers are "
                f"reachable by configuration alone")
    assert expected in " ".join(readme.split()), f"README.rst should say: {expected}"
