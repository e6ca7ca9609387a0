"""The check cache: sections cerberus found valid are not validated again (config/check_cache.py)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from elasticcluster.config import load_config, schema
from tests.config.cfgtools import set_key
from tests.conftest import VALID_CONFIG

LITERAL_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def validations(monkeypatch):
    """How many sections cerberus validated."""
    calls = []
    real = schema._validate

    def counted(document, *args):
        calls.append(document)
        return real(document, *args)

    monkeypatch.setattr(schema, "_validate", counted)
    return calls


def _cache_files(home):
    folder = home / ".cache" / "elasticcluster"
    return sorted(folder.glob("checks-*.json")) if folder.is_dir() else []


def _everything(config):
    return ({name: (t.cloud, t.logins, t.setup, t.cluster, t.kinds, t.global_vars)
             for name, t in config.templates.items()},
            config.skipped, {name: spec.values for name, spec in config.clouds.items()}, config.secrets)


def test_valid_sections_are_validated_once_and_give_the_same_config(home, write_config, validations):
    path = write_config(VALID_CONFIG)
    first = load_config(path)
    assert len(validations) == 4 and list(first.templates) == ["slurm"]
    del validations[:]
    second = load_config(path)
    assert validations == []
    assert _everything(second) == _everything(first)
    assert second.templates["slurm"].login["user_key_private"] == str(home / ".ssh" / "id_rsa")


def test_no_check_cache_validates_every_section(home, write_config, validations, monkeypatch):
    path = write_config(VALID_CONFIG)
    first = load_config(path)
    monkeypatch.setenv("ELASTICCLUSTER_NO_CHECK_CACHE", "1")
    del validations[:]
    assert _everything(load_config(path)) == _everything(first)
    assert len(validations) == 4


def test_an_edited_section_is_validated_again_with_cerberus_messages(home, write_config, validations,
                                                                      monkeypatch):
    path = write_config(VALID_CONFIG)
    load_config(path)
    path.write_text(set_key(VALID_CONFIG, "cluster/slurm", "compute_nodes", "lots"))
    del validations[:]
    edited = load_config(path)
    assert len(validations) == 1  # the cluster section; the others are as cerberus found them
    monkeypatch.setenv("ELASTICCLUSTER_NO_CHECK_CACHE", "1")
    assert edited.skipped == load_config(path).skipped
    assert any("compute_nodes = 'lots' cannot be read" in p for p in edited.skipped["slurm"])
    # an invalid section is never kept: it gets cerberus's messages again the next time
    monkeypatch.delenv("ELASTICCLUSTER_NO_CHECK_CACHE")
    del validations[:]
    assert load_config(path).skipped == edited.skipped
    assert len(validations) == 1


def test_a_value_from_the_environment_or_home_is_part_of_the_key(home, write_config, validations,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("EC_COMPUTES", "2")
    path = write_config(set_key(VALID_CONFIG, "cluster/slurm", "compute_nodes", "${EC_COMPUTES}"))
    assert load_config(path).templates["slurm"].kinds["compute"].count == 2
    monkeypatch.setenv("EC_COMPUTES", "3")
    assert load_config(path).templates["slurm"].kinds["compute"].count == 3
    other = tmp_path / "other-home"
    other.mkdir()
    monkeypatch.setenv("HOME", str(other))
    login = load_config(path).templates["slurm"].login
    assert login["user_key_private"] == str(other / ".ssh" / "id_rsa")


def test_the_cache_holds_no_secret_and_only_its_owner_reads_it(home, write_config, monkeypatch):
    monkeypatch.setenv("EC_SECRET", "from-the-environment-7d1f")
    text = set_key(VALID_CONFIG, "setup/ansible-slurm", "global_var_db_password", "${EC_SECRET}")
    path = write_config(text)
    config = load_config(path)
    assert LITERAL_SECRET in config.secrets
    [cache] = _cache_files(home)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    written = cache.read_text()
    assert LITERAL_SECRET not in written and "from-the-environment-7d1f" not in written
    assert load_config(path).templates["slurm"].global_vars["db_password"] == "from-the-environment-7d1f"


def test_a_cold_list_templates_imports_cerberus_only_for_sections_not_checked_before(home, write_config):
    path = write_config(VALID_CONFIG)
    env = {**os.environ, "ELASTICCLUSTER_NO_CACHE": "1"}

    def imports(extra=()):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "elasticcluster", "-c", str(path),
                               "list-templates", *extra], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}

    assert "cerberus" in imports()  # first run: every section validated
    assert "cerberus" not in imports()  # every section found valid before
    path.write_text(set_key(VALID_CONFIG, "cluster/slurm", "compute_nodes", "3"))
    assert "cerberus" in imports()  # the edited section
    env["ELASTICCLUSTER_NO_CHECK_CACHE"] = "1"
    assert "cerberus" in imports()
