"""Configuration files in the style of ElastiCluster 1.3 (``tests/data/compat13/``, written for the tests).

Each file alone, and each with one of the ``*-auth.conf`` files in
``config.d/``, gives exit status 0 or 2 and never a traceback; every
``[cluster/NAME]`` of the files is either listed or skipped with messages that
say where. Then the behaviours 1.3 users meet: the ``setup`` key, a cloud left
to a file of ``config.d/``, a section written twice, a world-readable
credentials file, and 1.3's template, whose every cluster has something to fix.
(``test_compat_13_corpus.py`` runs the same checks over the real 1.3 examples,
where they lie beside the repository.)
"""
from __future__ import annotations

import pytest

from elasticcluster.config import load_config
from tests.config.cfgtools import list_json, listed, skipped, warnings
from tests.config.compat13 import check_run, install
from tests.conftest import DATA

OURS = DATA / "compat13"
FILES = sorted(OURS.glob("*.conf")) + [OURS / "config.template"]
AUTH = sorted(OURS.glob("*-auth.conf"))
MAIN = [f for f in FILES if f not in AUTH]
#: the password of openstack-auth.conf
OPENSTACK_PASSWORD = "pw-c13-openstack"

#: file -> (exit status, templates listed) of `list-templates` on the file alone
ALONE = {
    "config.template": (2, set()),
    "google-auth.conf": (0, set()),
    "gridengine-on-google-complete.conf": (0, {"sge-on-gce"}),
    "jupyterhub-on-google.conf": (2, set()),  # its login is in google-auth.conf
    "kubernetes-on-aws-complete.conf": (0, {"k8s"}),
    "opennebula-auth.conf": (0, set()),
    "openstack-auth.conf": (0, set()),
    "slurm-with-gpu-on-google.conf": (0, {"gpu-slurm"}),
    "slurm.conf": (2, set()),
    "storage.conf": (2, set()),
    # libcloud's Azure driver needs a resource group, which 1.3 made by itself: refused, saying so
    "two-clusters-on-azure-complete.conf": (2, set()),
}


def test_our_13_style_files_are_there():
    assert sorted(f.name for f in FILES) == sorted(ALONE)
    assert [f.name for f in AUTH] == ["google-auth.conf", "opennebula-auth.conf", "openstack-auth.conf"]


@pytest.mark.parametrize("main", FILES, ids=[f.name for f in FILES])
def test_file_alone(cli, tmp_path, main):
    result, data = check_run(cli, install(tmp_path, main), [main])
    assert (result.returncode, set(listed(data))) == ALONE[main.name]


@pytest.mark.parametrize("main, auth", [(m, a) for m in MAIN for a in AUTH],
                         ids=[f"{m.name}+{a.name}" for m in MAIN for a in AUTH])
def test_file_with_auth_in_d_folder(cli, tmp_path, main, auth):
    check_run(cli, install(tmp_path, main, auth), [main, auth])


def test_azure_clusters_of_13_are_told_to_name_a_resource_group(cli, tmp_path):
    source = OURS / "two-clusters-on-azure-complete.conf"
    result, data = check_run(cli, install(tmp_path, source), [source])
    for name in ("azure-slurm", "azure-sge"):
        assert any("create_node needs ex_resource_group" in p and f"add ex_resource_group = ... to "
                   f"[cluster/{name}]" in p for p in skipped(data)[name]), skipped(data)[name]


def test_setup_key_of_13_is_accepted_with_a_deprecation_warning(cli, tmp_path):
    source = OURS / "gridengine-on-google-complete.conf"
    result, data = check_run(cli, install(tmp_path, source), [source])
    assert result.returncode == 0
    assert listed(data)["sge-on-gce"]["setup"] == "sge"
    deprecated = [w for w in warnings(result.stderr) if "deprecated" in w]
    assert len(deprecated) == 1
    assert "key 'setup' is deprecated; write 'setup_provider' instead" in deprecated[0]


def test_incomplete_file_says_which_section_is_missing(cli, tmp_path):
    source = OURS / "slurm.conf"
    result, data = check_run(cli, install(tmp_path, source), [source])
    assert result.returncode == 2
    (problem,) = skipped(data)["slurm-on-ubuntu"]
    assert "cloud = 'openstack': there is no [cloud/openstack] section" in problem


def test_missing_cloud_names_the_clouds_of_config_d(cli, tmp_path):
    # storage.conf's clusters use two clouds; openstack-auth.conf brings one of them
    source, auth = OURS / "storage.conf", OURS / "openstack-auth.conf"
    result, data = check_run(cli, install(tmp_path, source, auth), [source, auth])
    assert result.returncode == 0
    assert listed(data)["cephfs"]["nodes"] == {"mon": 1, "osd": 3, "client": 1}
    (problem,) = skipped(data)["gluster"]
    assert "cloud = 'one': there is no [cloud/one] section; defined: openstack" in problem


def test_kubernetes_duplicate_section_is_merged(cli, tmp_path):
    source = OURS / "kubernetes-on-aws-complete.conf"
    config = install(tmp_path, source)
    result, data = check_run(cli, config, [source])
    assert result.returncode == 0
    assert "section [cluster/k8s] appears again" in result.stderr
    assert listed(data)["k8s"]["nodes"] == {"master": 1, "worker": 3}
    template = load_config(config).templates["k8s"]
    # the later section's value wins, for every kind without an override of its own
    assert template.kinds["worker"].flavor == "t3.xlarge"
    assert template.kinds["master"].flavor == "t3.xlarge"
    assert template.kinds["master"].security_group == "k8s-api-open"
    assert template.kinds["worker"].security_group == "default"
    assert template.ssh_to == "master"


def test_per_kind_sections_override_the_cluster(cli, tmp_path):
    source = OURS / "slurm-with-gpu-on-google.conf"
    config = install(tmp_path, source)
    check_run(cli, config, [source])
    template = load_config(config).templates["gpu-slurm"]
    assert template.kinds["frontend"].flavor == "n1-standard-1"
    assert template.kinds["frontend"].extra == {}
    assert template.kinds["compute"].flavor == "n1-standard-4"
    assert template.kinds["compute"].extra == {"accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1}
    # KIND_var_* of the setup section for that kind only; global_var_* for all
    assert template.kinds["compute"].vars == {"allow_reboot": "yes"}
    assert template.kinds["frontend"].vars == {}
    assert template.global_vars == {"slurm_taskplugin": "task/cgroup"}


def test_slurm_with_openstack_auth(cli, tmp_path):
    config = install(tmp_path, OURS / "slurm.conf", OURS / "openstack-auth.conf")
    result, data = check_run(cli, config, [OURS / "slurm.conf", OURS / "openstack-auth.conf"])
    assert result.returncode == 0
    assert listed(data)["slurm-on-ubuntu"] == {
        "name": "slurm-on-ubuntu", "cloud": "openstack", "provider": "openstack", "login": "ubuntu",
        "setup": "slurm", "nodes": {"master": 1, "worker": 3}, "nodes_max": {}, "frontend": "master"}
    template = load_config(config).templates["slurm-on-ubuntu"]
    assert template.cloud["identity_api_version"] == "2"
    assert template.kinds["worker"].groups == ["slurm_worker", "ganglia_monitor", "glusterfs_server"]
    assert template.kinds["worker"].network_ids == ["0f3c5e8a-7d2b-4c1e-9a6f-52b1d0e4c7a9"]
    assert template.global_vars["multiuser_cluster"] == "yes"
    # the literal password of the auth file never shows
    assert OPENSTACK_PASSWORD not in result.output


def test_world_readable_auth_file_is_warned(cli, tmp_path):
    config = install(tmp_path, OURS / "slurm.conf", OURS / "openstack-auth.conf")
    auth = tmp_path / "config.d" / "openstack-auth.conf"
    auth.chmod(0o644)
    result, data = list_json(cli, config)
    assert result.returncode == 0
    assert f"{auth} can be read by other users and holds " in result.stderr
    assert "(password); run `chmod 600" in result.stderr
    # (1.3's own file has password "secret", which masks the word "secrets" of this message; ours does not)
    assert f"holds secrets (password); run `chmod 600 {auth}`" in result.stderr
    assert OPENSTACK_PASSWORD not in result.output


def test_config_template_of_13_reports_each_problem(cli, tmp_path):
    source = OURS / "config.template"
    result, data = check_run(cli, install(tmp_path, source), [source])
    assert result.returncode == 2
    problems = skipped(data)
    assert any("required key 'login' is missing" in p for p in problems["sge-on-gce"])
    assert any("login = 'centos': there is no [login/centos] section" in p for p in problems["pbs-on-aws"])
    assert any("no 'master_groups' key for the master nodes" in p for p in problems["slurm-on-openstack"])
