"""The list-templates report cache (elasticcluster/template_cache.py)."""
from __future__ import annotations

import json
import os
import stat

from tests.config.cfgtools import drop_key, list_json, listed, no_traceback, set_key, skipped
from tests.conftest import VALID_CONFIG

CLOUD = "cloud/hobbes"
CLUSTER = "cluster/slurm"
LITERAL_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _cache_files(home):
    folder = home / ".cache" / "elasticcluster"
    return sorted(folder.glob("templates-*.json")) if folder.is_dir() else []


def _only_cache_file(home):
    files = _cache_files(home)
    assert len(files) == 1, files
    return files[0]


def _identity(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _with_warnings(text: str) -> str:
    """A config whose loading warns (deprecated, obsolete and unknown keys)."""
    text = drop_key(text, CLUSTER, "setup_provider")
    text = set_key(text, CLUSTER, "setup", "ansible-slurm")
    text = set_key(text, CLUSTER, "flavour", "m1.tiny")
    return set_key(text, CLOUD, "auto_ip_assignment", "yes")


def test_second_run_gives_the_same_output_and_warnings_from_the_cache(cli, home, write_config):
    path = write_config(_with_warnings(VALID_CONFIG) + "\n[cluster/broken]\ncloud = nowhere\n", mode=0o644)
    first = cli("-c", str(path), "list-templates")
    no_traceback(first)
    cache = _only_cache_file(home)
    written = _identity(cache)
    second = cli("-c", str(path), "list-templates")
    assert _identity(cache) == written  # read, not rewritten: the cache was used
    assert (second.returncode, second.stdout, second.stderr) == (first.returncode, first.stdout, first.stderr)
    for expected in ("key 'setup' is deprecated", "unknown key 'flavour' ignored",
                     "key 'auto_ip_assignment' is no longer used", "ignoring cluster template 'broken'",
                     "can be read by other users"):
        assert expected in second.stderr
    assert LITERAL_SECRET not in second.output


def test_the_cache_is_really_used_and_no_cache_bypasses_it(cli, home, write_config):
    path = write_config(VALID_CONFIG)
    result, data = list_json(cli, path)
    assert list(listed(data)) == ["slurm"]
    cache = _only_cache_file(home)
    # tamper with the stored report: a run that uses the cache shows the tampered name
    stored = json.loads(cache.read_text())
    stored["report"]["templates"][0]["name"] = "from-the-cache"
    cache.write_text(json.dumps(stored))
    result, data = list_json(cli, path)
    assert list(listed(data)) == ["from-the-cache"]
    result, data = list_json(cli, path, env={"ELASTICCLUSTER_NO_CACHE": "1"})
    assert list(listed(data)) == ["slurm"]


def test_no_cache_writes_no_cache_file(cli, home, write_config):
    result, data = list_json(cli, write_config(VALID_CONFIG), env={"ELASTICCLUSTER_NO_CACHE": "1"})
    assert list(listed(data)) == ["slurm"]
    assert _cache_files(home) == []


def test_editing_the_config_invalidates(cli, home, write_config):
    path = write_config(VALID_CONFIG)
    result, data = list_json(cli, path)
    assert listed(data)["slurm"]["nodes"]["compute"] == 2
    stamp = path.stat().st_mtime_ns
    path.write_text(set_key(VALID_CONFIG, CLUSTER, "compute_nodes", "15"))
    os.utime(path, ns=(stamp, stamp))  # same mtime: the size still tells
    result, data = list_json(cli, path)
    assert listed(data)["slurm"]["nodes"]["compute"] == 15
    path.write_text(set_key(VALID_CONFIG, CLUSTER, "compute_nodes", "16"))  # same size, new mtime
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    result, data = list_json(cli, path)
    assert listed(data)["slurm"]["nodes"]["compute"] == 16


def test_a_new_d_file_invalidates(cli, home, write_config):
    path = write_config(VALID_CONFIG)
    assert list_json(cli, path)[1]["skipped"] == []
    write_config("[cluster/slurm]\ncompute_nodes = none\n", "config.d/late.conf")
    result, data = list_json(cli, path)
    assert result.returncode == 2
    assert "compute_nodes = 'none'" in skipped(data)["slurm"][0]


def test_chmod_invalidates_the_permission_warning(cli, home, write_config):
    path = write_config(VALID_CONFIG, mode=0o644)
    assert "can be read by other users" in cli("-c", str(path), "list-templates").stderr
    path.chmod(0o600)
    assert "can be read by other users" not in cli("-c", str(path), "list-templates").stderr


def test_a_referenced_environment_variable_invalidates(cli, home, write_config):
    path = write_config(set_key(VALID_CONFIG, CLUSTER, "flavor", "${EC_TEST_FLAVOR}"))
    result, data = list_json(cli, path, env={"EC_TEST_FLAVOR": "m1.small"})
    assert result.returncode == 0
    result, data = list_json(cli, path)  # now unset
    assert result.returncode == 2
    assert "EC_TEST_FLAVOR, which is not set" in skipped(data)["slurm"][0]
    result, data = list_json(cli, path, env={"EC_TEST_FLAVOR": "m1.small"})
    assert result.returncode == 0


def test_a_changed_secret_value_invalidates_without_being_stored(cli, home, write_config):
    path = write_config(set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "${EC_TEST_SECRET}"))
    list_json(cli, path, env={"EC_TEST_SECRET": "first-secret-value-1"})
    cache = _only_cache_file(home)
    before = _identity(cache)
    list_json(cli, path, env={"EC_TEST_SECRET": "first-secret-value-1"})
    assert _identity(cache) == before
    list_json(cli, path, env={"EC_TEST_SECRET": "second-secret-value-2"})
    assert _identity(cache) != before  # a new value: loaded again and stored again
    text = cache.read_text()
    assert "first-secret-value-1" not in text and "second-secret-value-2" not in text


def test_a_credential_fallback_variable_invalidates(cli, home, write_config):
    text = drop_key(drop_key(VALID_CONFIG, CLOUD, "ec2_access_key"), CLOUD, "ec2_secret_key")
    path = write_config(text)
    result, data = list_json(cli, path)
    assert result.returncode == 2
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "aws-secret-from-env"}
    result, data = list_json(cli, path, env=env)
    assert result.returncode == 0 and list(listed(data)) == ["slurm"]
    assert "aws-secret-from-env" not in _only_cache_file(home).read_text()


def test_cache_file_is_private_and_holds_no_secret(cli, home, write_config):
    token = "do-token-0123456789"
    text = VALID_CONFIG + f"\n[cloud/do]\nprovider = digitalocean\nkey = {token}\n"
    text += "\n[cluster/drops]\ncloud = do\nlogin = gc3-user\nsetup_provider = ansible-slurm\n" \
            "image_id = x\nflavor = y\ncompute_nodes = 1\nfrontend_nodes = 1\n"
    text = set_key(text, CLUSTER, "compute_nodes", "${EC_TEST_COUNT}")
    result, data = list_json(cli, write_config(text, mode=0o644), env={"EC_TEST_COUNT": "Count-From-Env"})
    cache = _only_cache_file(home)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) & 0o077 == 0
    content = cache.read_text()
    for secret in (LITERAL_SECRET, token, "Count-From-Env"):
        assert secret not in content
        assert secret not in result.output
    # what is stored is the report
    stored = json.loads(content)
    assert stored["report"]["templates"] == data["templates"]


def test_corrupt_cache_is_ignored(cli, home, write_config):
    path = write_config(VALID_CONFIG)
    list_json(cli, path)
    cache = _only_cache_file(home)
    cache.write_text("{not json")
    result, data = list_json(cli, path)
    assert result.returncode == 0 and list(listed(data)) == ["slurm"]
    assert json.loads(cache.read_text())["report"]["templates"] == data["templates"]


def test_unwritable_cache_folder_is_not_an_error(cli, home, write_config, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result, data = list_json(cli, write_config(VALID_CONFIG), env={"XDG_CACHE_HOME": str(blocker)})
    assert result.returncode == 0 and list(listed(data)) == ["slurm"]
