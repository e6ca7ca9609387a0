"""``list-templates``: JSON output, patterns, and the first-run template deployment."""
from __future__ import annotations

import json
import os
import re
import stat

from elasticcluster.config import load_config
from elasticcluster.resources import default_config_template
from tests.config.cfgtools import list_json, listed, no_traceback, set_key, skipped
from tests.conftest import VALID_CONFIG

TEMPLATE_KEYS = {"name", "cloud", "provider", "login", "setup", "nodes", "nodes_max", "frontend"}

TWO_MORE = """
[cluster/gridengine]
cloud = hobbes
login = gc3-user
setup_provider = ansible-slurm
image_id = ami-1
flavor = m1.large
compute_nodes = 8
frontend_nodes = 1

[cluster/broken]
cloud = hobbes
login = gc3-user
setup_provider = ansible-slurm
image_id = ami-1
flavor = m1.large
compute_nodes = eight
"""


def test_json_output(cli, write_config):
    result, data = list_json(cli, write_config(VALID_CONFIG + TWO_MORE))
    assert result.returncode == 0
    assert set(data) == {"format", "templates", "skipped"}
    assert data["format"] == 1
    assert [t["name"] for t in data["templates"]] == ["gridengine", "slurm"]
    for template in data["templates"]:
        assert set(template) == TEMPLATE_KEYS
    assert listed(data)["slurm"] == {
        "name": "slurm", "cloud": "hobbes", "provider": "ec2_boto", "login": "gc3-user",
        "setup": "ansible-slurm", "nodes": {"frontend": 1, "compute": 2}, "nodes_max": {}, "frontend": "frontend",
    }
    assert listed(data)["gridengine"]["nodes"] == {"compute": 8, "frontend": 1}
    assert listed(data)["gridengine"]["frontend"] == "compute"  # no ssh_to: first kind by name
    assert [set(s) for s in data["skipped"]] == [{"name", "problems"}]
    assert data["skipped"][0]["name"] == "broken"
    assert all(isinstance(p, str) for p in data["skipped"][0]["problems"])
    assert "compute_nodes = 'eight'" in data["skipped"][0]["problems"][0]


def test_json_holds_no_secret(cli, write_config):
    result, data = list_json(cli, write_config(VALID_CONFIG))
    assert "wJalrXUtnFEMI" not in result.stdout
    assert "AKIDEXAMPLE" not in result.stdout  # credentials are not part of a template summary


def test_patterns_select_templates(cli, write_config):
    path = write_config(VALID_CONFIG + TWO_MORE)
    result, data = list_json(cli, path, "grid*")
    assert list(listed(data)) == ["gridengine"] and data["skipped"] == []
    result, data = list_json(cli, path, "*r*")
    assert sorted(listed(data)) == ["gridengine", "slurm"] and list(skipped(data)) == ["broken"]
    result, data = list_json(cli, path, "nothing*")
    assert result.returncode == 0 and data["templates"] == []


def test_plain_output_when_piped(cli, write_config):
    result = cli("-c", str(write_config(VALID_CONFIG + TWO_MORE)), "list-templates")
    no_traceback(result)
    assert result.returncode == 0
    assert result.stdout.startswith("2 cluster templates found.")
    assert "\x1b[" not in result.stdout  # no colour when piped
    assert "name:     slurm" in result.stdout and "name:     gridengine" in result.stdout
    assert "compute nodes: 8" in result.stdout
    assert "ignoring cluster template 'broken'" in result.stderr


def test_config_without_cluster_sections(cli, write_config):
    text = VALID_CONFIG[: VALID_CONFIG.index("[cluster/")]
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 0
    assert data["templates"] == [] and data["skipped"] == []


# -- first run ------------------------------------------------------------------


def test_first_run_deploys_the_commented_template(cli, home):
    config = home / ".elasticcluster" / "config"
    assert not config.exists()
    result = cli("list-templates", "--json")
    no_traceback(result)
    assert result.returncode == 0, result.output
    assert config.is_file()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_text() == default_config_template().read_text()
    assert f"Deploying default configuration file to {config}" in result.stderr
    data = json.loads(result.stdout)
    local = [t for t in data["templates"] if t["provider"] == "local"]
    assert local, data
    assert data["skipped"] == []
    # the deployed file validates through the API too, with no warning-worthy problem
    loaded = load_config(config)
    assert loaded.skipped == {}
    assert any(t.provider == "local" for t in loaded.templates.values())
    assert {t["name"] for t in data["templates"]} == set(loaded.templates)


def test_deployed_template_is_fully_commented(home):
    text = default_config_template().read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert len(comments) > len(text.splitlines()) / 3
    for section in ("[cloud/", "[login/", "[setup/", "[cluster/"):
        assert section in text


def test_second_run_does_not_rewrite(cli, home):
    config = home / ".elasticcluster" / "config"
    first = cli("list-templates")
    assert first.returncode == 0 and "Deploying default configuration" in first.stderr
    config.write_text(config.read_text() + "\n# my own note\n")
    before = (config.stat().st_mtime_ns, config.read_text())
    second = cli("list-templates")
    no_traceback(second)
    assert second.returncode == 0
    assert "Deploying" not in second.stderr
    assert (config.stat().st_mtime_ns, config.read_text()) == before
    assert second.stdout == first.stdout


def test_no_deployment_with_a_missing_c_path(cli, home, tmp_path):
    result = cli("-c", str(tmp_path / "missing"), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert "Deploying" not in result.stderr
    assert not (home / ".elasticcluster").exists()
    assert not (tmp_path / "missing").exists()


def test_no_deployment_when_only_the_d_folder_exists(cli, home):
    folder = home / ".elasticcluster" / "config.d"
    folder.mkdir(parents=True)
    (folder / "mine.conf").write_text(VALID_CONFIG)
    (folder / "mine.conf").chmod(0o600)
    result, data = list_json(cli, "~/.elasticcluster/config")
    assert result.returncode == 0
    result = cli("list-templates", "--json")
    no_traceback(result)
    assert "Deploying" not in result.stderr
    assert not (home / ".elasticcluster" / "config").exists()
    assert list(listed(json.loads(result.stdout))) == ["slurm"]


def test_deployed_config_mode_ignores_umask(cli, home):
    old = os.umask(0)  # the child inherits it
    try:
        result = cli("list-templates")
    finally:
        os.umask(old)
    assert result.returncode == 0
    folder = home / ".elasticcluster"
    assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0
    assert stat.S_IMODE((folder / "config").stat().st_mode) == 0o600


def test_list_templates_json_on_broken_deployed_config(cli, home):
    """A user's edit that breaks every template: exit 2, problems listed, no traceback."""
    assert cli("list-templates").returncode == 0
    config = home / ".elasticcluster" / "config"
    text = config.read_text()
    names = re.findall(r"^\[cluster/(local-[\w-]+)\]", text, re.M)  # every bundled local template
    assert {"local-slurm", "local-gridengine", "local-ganglia", "local-ipython",
            "local-glusterfs"} <= set(names)
    for name in names:
        text = set_key(text, f"cluster/{name}", "flavor", "")
    config.write_text(text)
    result = cli("list-templates", "--json")
    no_traceback(result)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["templates"] == [] and len(data["skipped"]) == len(names)


def test_list_templates_shows_the_autoscaled_ceiling(cli, home):
    """An autoscaled kind (KIND_nodes_max): its count and how far autoscale may take it."""
    result = cli("list-templates", "local-slurm*")
    assert result.returncode == 0, result.output
    assert "compute nodes: 0 (autoscaled up to 4)" in result.stdout
    assert "compute nodes: 2\n" in result.stdout  # local-slurm: no ceiling
    data = json.loads(cli("list-templates", "--json", "local-slurm*").stdout)
    by_name = {t["name"]: t for t in data["templates"]}
    assert by_name["local-slurm-elastic"]["nodes"] == {"compute": 0, "frontend": 1}
    assert by_name["local-slurm-elastic"]["nodes_max"] == {"compute": 4}
    assert by_name["local-slurm"]["nodes_max"] == {}
