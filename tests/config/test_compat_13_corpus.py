"""The example files of ElastiCluster 1.3 itself, where they lie beside the repository: an extra check.

On the development machines ``../shared/compat/elasticluster-1.3/`` holds the
real configuration files of the original ElastiCluster 1.3; a clone of the
repository has no such folder, and this module is skipped there, as a whole.
The behaviours checked here are checked on every machine by
``test_compat_13.py``, over files of the same shapes written for the tests
(``tests/data/compat13/``); here, the same checks run over the real files.
"""
from __future__ import annotations

import pytest

from elasticcluster.config import load_config
from tests.config.cfgtools import cluster_names, list_json, listed, skipped, warnings
from tests.config.compat13 import check_run, install
from tests.conftest import COMPAT

if not COMPAT.is_dir():
    pytest.skip("ElastiCluster 1.3 example corpus not beside the repository (../shared/compat): "
                "extra check skipped (tests/config/test_compat_13.py covers the same behaviours)",
                allow_module_level=True)

FILES = sorted(COMPAT.glob("*.conf")) + [COMPAT / "config.template"]
AUTH = sorted(COMPAT.glob("*-auth.conf"))
MAIN = [f for f in FILES if f not in AUTH]


def test_the_compat_files_are_there():
    assert len(MAIN) >= 10 and len(AUTH) >= 3, FILES
    assert (COMPAT / "config.template").is_file()


@pytest.mark.parametrize("main", FILES, ids=[f.name for f in FILES])
def test_file_alone(cli, tmp_path, main):
    config = install(tmp_path, main)
    result, data = check_run(cli, config, [main])
    if not cluster_names(main.read_text()):
        assert result.returncode == 0 and data["templates"] == []


@pytest.mark.parametrize("main, auth", [(m, a) for m in MAIN for a in AUTH],
                         ids=[f"{m.name}+{a.name}" for m in MAIN for a in AUTH])
def test_file_with_auth_in_d_folder(cli, tmp_path, main, auth):
    check_run(cli, install(tmp_path, main, auth), [main, auth])


def test_setup_key_of_13_is_accepted_with_a_deprecation_warning(cli, tmp_path):
    result, data = check_run(cli, install(tmp_path, COMPAT / "gridengine-on-google-complete.conf"),
                             [COMPAT / "gridengine-on-google-complete.conf"])
    assert result.returncode == 0
    assert listed(data)["gridengine"]["setup"] == "gridengine"
    deprecated = [w for w in warnings(result.stderr) if "deprecated" in w]
    assert len(deprecated) == 1
    assert "key 'setup' is deprecated; write 'setup_provider' instead" in deprecated[0]


def test_incomplete_file_says_which_section_is_missing(cli, tmp_path):
    result, data = check_run(cli, install(tmp_path, COMPAT / "slurm.conf"), [COMPAT / "slurm.conf"])
    assert result.returncode == 2
    (problem,) = skipped(data)["slurm-on-ubuntu16"]
    assert "cloud = 'openstack': there is no [cloud/openstack] section" in problem


def test_kubernetes_duplicate_section_is_merged(cli, tmp_path):
    source = COMPAT / "kubernetes-on-aws-complete.conf"
    config = install(tmp_path, source)
    result, data = check_run(cli, config, [source])
    assert result.returncode == 0
    assert "section [cluster/kubernetes-on-centos] appears again" in result.stderr
    assert listed(data)["kubernetes-on-centos"]["nodes"] == {"master": 1, "worker": 4}
    template = load_config(config).templates["kubernetes-on-centos"]
    # the later section's value wins, for every kind without an override of its own
    assert template.kinds["worker"].flavor == "t2.xlarge"
    assert template.kinds["master"].flavor == "t2.xlarge"
    assert template.kinds["master"].security_group == "allow-my-org-in"
    assert template.kinds["worker"].security_group == "default"
    assert template.ssh_to == "master"


def test_slurm_with_openstack_auth(cli, tmp_path):
    config = install(tmp_path, COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf")
    result, data = check_run(cli, config, [COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf"])
    assert result.returncode == 0
    assert listed(data)["slurm-on-ubuntu16"] == {
        "name": "slurm-on-ubuntu16", "cloud": "openstack", "provider": "openstack", "login": "ubuntu",
        "setup": "slurm", "nodes": {"master": 1, "worker": 4}, "nodes_max": {}, "frontend": "master"}
    template = load_config(config).templates["slurm-on-ubuntu16"]
    assert template.cloud["identity_api_version"] == "2"
    assert template.kinds["worker"].groups == ["slurm_worker", "ganglia_monitor", "glusterfs_server"]
    assert template.kinds["worker"].network_ids == ["c86b320c-9542-4032-a951-c8a068894cc2"]
    assert template.global_vars["multiuser_cluster"] == "yes"
    # the literal password of the auth file never shows
    assert "password=secret" not in result.output


def test_world_readable_auth_file_is_warned(cli, tmp_path):
    config = install(tmp_path, COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf")
    auth = tmp_path / "config.d" / "openstack-auth.conf"
    auth.chmod(0o644)
    result, data = list_json(cli, config)
    assert result.returncode == 0
    # (the password of that file is "secret": log lines mask it wherever it appears)
    assert f"{auth} can be read by other users and holds " in result.stderr
    assert "(password); run `chmod 600" in result.stderr


def test_config_template_of_13_reports_each_problem(cli, tmp_path):
    source = COMPAT / "config.template"
    result, data = check_run(cli, install(tmp_path, source), [source])
    assert result.returncode == 2
    problems = skipped(data)
    assert any("required key 'login' is missing" in p for p in problems["gridengine-on-gce"])
    assert any("login = 'centos': there is no [login/centos] section" in p for p in problems["torque"])
    assert any("no 'master_groups' key for the master nodes" in p for p in problems["slurm-on-ubuntu14"])
