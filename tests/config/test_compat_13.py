"""Configuration files written for ElastiCluster 1.3 (../shared/compat/elasticluster-1.3/).

Each file alone, and each with one of its ``*-auth.conf`` files in ``config.d/``,
gives exit status 0 or 2 and never a traceback; every ``[cluster/NAME]`` of
the files is either listed or skipped with messages that say where.
"""
from __future__ import annotations

import re
import shutil

import pytest

from elasticcluster.config import load_config
from tests.config.cfgtools import cluster_names, list_json, listed, skipped, warnings
from tests.conftest import COMPAT

FILES = sorted(COMPAT.glob("*.conf")) + [COMPAT / "config.template"]
AUTH = sorted(COMPAT.glob("*-auth.conf"))
MAIN = [f for f in FILES if f not in AUTH]
#: a problem starts with FILE:LINE: [type/name]
#: each problem says what is expected, or what to do
WHAT_TO_DO = ("expected", "did you mean", "defined: ", "add one", "remove it", "; add ")
PROBLEM = re.compile(r"^(?P<file>/\S+?):(?P<line>\d+): \[(cloud|login|setup|cluster)/[^\]]+\]")


def test_the_compat_files_are_there():
    assert len(MAIN) >= 10 and len(AUTH) >= 3, FILES
    assert (COMPAT / "config.template").is_file()


def _install(tmp_path, main, auth=None):
    config = tmp_path / "config"
    shutil.copyfile(main, config)
    config.chmod(0o600)
    if auth is not None:
        (tmp_path / "config.d").mkdir()
        extra = tmp_path / "config.d" / auth.name
        shutil.copyfile(auth, extra)
        extra.chmod(0o600)
    return config


def _check_run(cli, config, sources):
    result, data = list_json(cli, config)  # asserts: exit 0 or 2, no traceback, JSON on stdout
    expected = set()
    for source in sources:
        expected |= cluster_names(source.read_text())
    # every template of the files is accounted for, once
    assert set(listed(data)) | set(skipped(data)) == expected
    assert not set(listed(data)) & set(skipped(data))
    if result.returncode == 2:
        assert data["templates"] == [] and data["skipped"]
        assert "ERROR: no valid cluster template" in result.stderr
    for name, problems in skipped(data).items():
        assert problems, name
        assert f"ignoring cluster template '{name}'" in result.stderr
        for problem in problems:
            match = PROBLEM.match(problem)
            assert match, problem
            assert match.group("file") in {str(config), *map(str, config.parent.glob("config.d/*"))}
            assert any(hint in problem for hint in WHAT_TO_DO), problem
    # every warning names where it comes from, or the template it is about
    for line in warnings(result.stderr):
        assert str(config.parent) in line or "ignoring cluster template" in line, line
    return result, data


@pytest.mark.parametrize("main", FILES, ids=[f.name for f in FILES])
def test_file_alone(cli, tmp_path, main):
    config = _install(tmp_path, main)
    result, data = _check_run(cli, config, [main])
    if not cluster_names(main.read_text()):
        assert result.returncode == 0 and data["templates"] == []


@pytest.mark.parametrize("main, auth", [(m, a) for m in MAIN for a in AUTH],
                         ids=[f"{m.name}+{a.name}" for m in MAIN for a in AUTH])
def test_file_with_auth_in_d_folder(cli, tmp_path, main, auth):
    _check_run(cli, _install(tmp_path, main, auth), [main, auth])


def test_setup_key_of_13_is_accepted_with_a_deprecation_warning(cli, tmp_path):
    result, data = _check_run(cli, _install(tmp_path, COMPAT / "gridengine-on-google-complete.conf"),
                              [COMPAT / "gridengine-on-google-complete.conf"])
    assert result.returncode == 0
    assert listed(data)["gridengine"]["setup"] == "gridengine"
    deprecated = [w for w in warnings(result.stderr) if "deprecated" in w]
    assert len(deprecated) == 1
    assert "key 'setup' is deprecated; write 'setup_provider' instead" in deprecated[0]


def test_incomplete_file_says_which_section_is_missing(cli, tmp_path):
    result, data = _check_run(cli, _install(tmp_path, COMPAT / "slurm.conf"), [COMPAT / "slurm.conf"])
    assert result.returncode == 2
    (problem,) = skipped(data)["slurm-on-ubuntu16"]
    assert "cloud = 'openstack': there is no [cloud/openstack] section" in problem


def test_kubernetes_duplicate_section_is_merged(cli, tmp_path):
    source = COMPAT / "kubernetes-on-aws-complete.conf"
    config = _install(tmp_path, source)
    result, data = _check_run(cli, config, [source])
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
    config = _install(tmp_path, COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf")
    result, data = _check_run(cli, config, [COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf"])
    assert result.returncode == 0
    assert listed(data)["slurm-on-ubuntu16"] == {
        "name": "slurm-on-ubuntu16", "cloud": "openstack", "provider": "openstack", "login": "ubuntu",
        "setup": "slurm", "nodes": {"master": 1, "worker": 4}, "frontend": "master"}
    template = load_config(config).templates["slurm-on-ubuntu16"]
    assert template.cloud["identity_api_version"] == "2"
    assert template.kinds["worker"].groups == ["slurm_worker", "ganglia_monitor", "glusterfs_server"]
    assert template.kinds["worker"].network_ids == ["c86b320c-9542-4032-a951-c8a068894cc2"]
    assert template.global_vars["multiuser_cluster"] == "yes"
    # the literal password of the auth file never shows
    assert "password=secret" not in result.output


def test_world_readable_auth_file_is_warned(cli, tmp_path):
    config = _install(tmp_path, COMPAT / "slurm.conf", COMPAT / "openstack-auth.conf")
    auth = tmp_path / "config.d" / "openstack-auth.conf"
    auth.chmod(0o644)
    result, data = list_json(cli, config)
    assert result.returncode == 0
    # (the password of that file is "secret": log lines mask it wherever it appears)
    assert f"{auth} can be read by other users and holds " in result.stderr
    assert "(password); run `chmod 600" in result.stderr


def test_config_template_of_13_reports_each_problem(cli, tmp_path):
    source = COMPAT / "config.template"
    result, data = _check_run(cli, _install(tmp_path, source), [source])
    assert result.returncode == 2
    problems = skipped(data)
    assert any("required key 'login' is missing" in p for p in problems["gridengine-on-gce"])
    assert any("login = 'centos': there is no [login/centos] section" in p for p in problems["torque"])
    assert any("no 'master_groups' key for the master nodes" in p for p in problems["slurm-on-ubuntu14"])
