"""Reading files: PATH.d includes, interpolation, ~, environment, duplicates, permissions."""
from __future__ import annotations

import logging

import pytest

from elasticcluster.config import load_config
from elasticcluster.exceptions import ConfigurationError
from tests.config.cfgtools import drop_key, key_line, list_json, listed, no_traceback, set_key, skipped
from tests.conftest import VALID_CONFIG

CLUSTER = "cluster/slurm"
CLOUD = "cloud/hobbes"
LOGIN = "login/gc3-user"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"  # the literal secret of VALID_CONFIG


def _split(text: str, *sections: str) -> tuple[str, str]:
    """Move ``sections`` of ``text`` into a second text: (rest, moved)."""
    blocks = text.split("\n[")
    blocks = [blocks[0]] + ["[" + b for b in blocks[1:]]
    moved = [b for b in blocks if any(b.startswith(f"[{s}]") for s in sections)]
    rest = [b for b in blocks if b not in moved]
    return "\n".join(rest), "\n".join(moved)


def _warnings(caplog):
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# -- PATH.d includes -------------------------------------------------------------


def test_d_files_are_read_after_main_in_name_order(write_config):
    main = write_config(VALID_CONFIG)
    write_config("[cluster/slurm]\nflavor = from-20\ncompute_nodes = 7\n", "config.d/20-late.conf")
    write_config("[cluster/slurm]\nflavor = from-10\nimage_id = ami-10\n", "config.d/10-early.conf")
    write_config("[cluster/slurm]\nflavor = not-read\n", "config.d/30-ignored.txt")
    config = load_config(main)
    assert [p.name for p in config.files] == ["config", "10-early.conf", "20-late.conf"]
    compute = config.templates["slurm"].kinds["compute"]
    assert compute.flavor == "from-20"  # the last file in name order wins
    assert compute.image_id == "ami-10"  # keys of all files are merged
    assert compute.count == 7
    assert config.templates["slurm"].cluster["security_group"] == "default"  # from the main file


def test_sections_spread_over_files_link(write_config):
    rest, cloud = _split(VALID_CONFIG, CLOUD)
    assert "[cloud/hobbes]" not in rest and "[cloud/hobbes]" in cloud
    main = write_config(rest)
    # alone, the cloud is missing
    assert "slurm" in load_config(main).skipped
    write_config(cloud, "config.d/hobbes.conf")
    config = load_config(main)
    assert list(config.templates) == ["slurm"]
    assert config.templates["slurm"].cloud["ec2_region"] == "nova"


def test_problem_in_d_file_names_that_file(write_config):
    main = write_config(VALID_CONFIG)
    extra_text = "# a comment\n[cluster/slurm]\ncompute_nodes = many\n"
    extra = write_config(extra_text, "config.d/counts.conf")
    problems = load_config(main).skipped["slurm"]
    assert problems == [f"{extra}:3: [cluster/slurm] compute_nodes = 'many' cannot be read; "
                        "expected a whole number from 0 to 10000"]


def test_config_given_only_by_a_d_folder(cli, write_config, tmp_path):
    rest, cloud = _split(VALID_CONFIG, CLOUD)
    write_config(rest, "only.d/a-templates.conf")
    write_config(cloud, "only.d/b-cloud.conf")
    main = tmp_path / "only"
    assert not main.exists()
    assert list(load_config(main).templates) == ["slurm"]
    result, data = list_json(cli, main)
    assert result.returncode == 0
    assert list(listed(data)) == ["slurm"]


def test_missing_config_file_exits_2(cli, home, tmp_path):
    missing = tmp_path / "nope" / "config"
    result = cli("-c", str(missing), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert f"configuration file {missing} not found" in result.stderr
    assert "-c PATH" in result.stderr
    assert result.stdout == ""
    assert not (home / ".elasticcluster").exists()  # nothing deployed for a -c path


def test_missing_config_file_through_the_api(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        load_config(tmp_path / "absent")


def test_unparseable_file_exits_2_without_echoing_the_value(cli, write_config):
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", '"unbalanced-s3cr3t')
    path = write_config(text)
    result = cli("-c", str(path), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    line = key_line(text, CLOUD, "ec2_secret_key")
    assert f"{path}:{line}: the value of 'ec2_secret_key' cannot be parsed" in result.stderr
    assert "unbalanced-s3cr3t" not in result.output


def test_nested_section_is_refused_clearly(cli, write_config):
    path = write_config(VALID_CONFIG + "[[compute]]\nflavor = x\n")
    result = cli("-c", str(path), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert "nested sections are not supported" in result.stderr


def test_undecodable_file_exits_2(cli, tmp_path):
    path = tmp_path / "config"
    path.write_bytes(b"\xff\xfe[cluster/x]\n")
    result = cli("-c", str(path), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert f"cannot read configuration file {path}" in result.stderr


def test_sections_of_unknown_type_are_warned(write_config, caplog):
    text = VALID_CONFIG + "\n[storage]\nstorage_path = /tmp/x\n\n[clutser/foo]\ncloud = hobbes\n\n[cluster/a/b/c]\n"
    config = load_config(write_config(text))
    assert list(config.templates) == ["slurm"]
    warned = _warnings(caplog)
    assert "section [storage] (ElastiCluster 1.3) is ignored" in warned
    assert "section [clutser/foo] is not of a known type" in warned
    assert "section [cluster/a/b/c] is not of a known type" in warned


def test_duplicate_key_later_value_wins(write_config, caplog):
    text = VALID_CONFIG.replace("flavor = m1.small", "flavor = m1.small\nflavor = m1.large")
    path = write_config(text)
    config = load_config(path)
    assert config.templates["slurm"].kinds["compute"].flavor == "m1.large"
    first = key_line(text, CLUSTER, "flavor")
    assert f"{path}:{first + 1}: key 'flavor' appears again in [cluster/slurm] (first at line {first}); " \
           "the later value is used" in _warnings(caplog)


def test_duplicate_key_problem_points_at_the_later_line(write_config):
    text = VALID_CONFIG.replace("compute_nodes = 2", "compute_nodes = 2\ncompute_nodes = lots")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    later = key_line(text, CLUSTER, "compute_nodes") + 1
    assert problems == [f"{path}:{later}: [cluster/slurm] compute_nodes = 'lots' cannot be read; "
                        "expected a whole number from 0 to 10000"]


def test_duplicate_section_is_merged(write_config, caplog):
    text = VALID_CONFIG + "\n[cluster/slurm]\nflavor = m1.xlarge\n"
    path = write_config(text)
    config = load_config(path)
    template = config.templates["slurm"]
    assert template.kinds["compute"].flavor == "m1.xlarge"
    assert template.kinds["compute"].image_id == "ami-00000048"
    again = len(text.splitlines()) - 1
    assert f"{path}:{again}: section [cluster/slurm] appears again (first at line " \
           f"{VALID_CONFIG.splitlines().index('[cluster/slurm]') + 1}); its keys are merged" in _warnings(caplog)


def test_repeated_section_keys_do_not_go_to_the_section_before(write_config):
    """Regression: configobj put the keys after a repeated header into the previous section."""
    text = VALID_CONFIG + "\n[cluster/slurm/frontend]\nimage_id = ami-front\n" \
        "\n[login/gc3-user]\nssh_port = 2222\n" \
        "\n[cluster/slurm]\nflavor = m1.xlarge\ncompute_nodes = 6\n"
    template = load_config(write_config(text)).templates["slurm"]
    assert template.login["ssh_port"] == 2222
    assert template.kinds["frontend"].image_id == "ami-front"
    assert template.kinds["frontend"].flavor == "m1.xlarge"
    assert template.kinds["compute"].flavor == "m1.xlarge"
    assert template.kinds["compute"].count == 6


def test_problem_in_a_repeated_section_points_at_its_line(write_config):
    text = VALID_CONFIG + "\n[cluster/slurm/compute]\nflavor = big\n\n[cluster/slurm]\nfrontend_nodes = one\n"
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{len(text.splitlines())}: [cluster/slurm] frontend_nodes = 'one' cannot be "
                        "read; expected a whole number from 0 to 10000"]


# -- interpolation ---------------------------------------------------------------


def test_env_interpolation(write_config, monkeypatch):
    monkeypatch.setenv("EC_TEST_SECRET", "from-the-environment-1234")
    monkeypatch.setenv("EC_TEST_REGION", "zrh")
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "${EC_TEST_SECRET}")
    text = set_key(text, CLOUD, "ec2_region", "prefix-${EC_TEST_REGION}-suffix")
    config = load_config(write_config(text))
    cloud = config.templates["slurm"].cloud
    assert cloud["ec2_secret_key"] == "from-the-environment-1234"
    assert cloud["ec2_region"] == "prefix-zrh-suffix"
    assert "from-the-environment-1234" in config.secrets


def test_env_interpolation_unset_variable(write_config):
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "${EC_TEST_UNSET_VARIABLE}")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, CLOUD, 'ec2_secret_key')}: [{CLOUD}] ec2_secret_key: "
                        "refers to environment variable EC_TEST_UNSET_VARIABLE, which is not set; "
                        "expected `export EC_TEST_UNSET_VARIABLE=...` before running elasticcluster"]


def test_env_interpolation_unset_through_the_cli(cli, write_config):
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "${EC_TEST_UNSET_VARIABLE}")
    result, data = list_json(cli, write_config(text))
    assert result.returncode == 2
    assert "environment variable EC_TEST_UNSET_VARIABLE, which is not set" in skipped(data)["slurm"][0]
    assert "EC_TEST_UNSET_VARIABLE" in result.stderr


def test_env_secret_never_appears_in_output(cli, write_config):
    secret = "Env-Secret-Value-9f8e7d"
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "${EC_TEST_SECRET}")
    text = set_key(text, CLOUD, "ec2_access_key", "${EC_TEST_ACCESS}")
    path = write_config(text, mode=0o644)  # readable by others, but holds no literal secret
    env = {"EC_TEST_SECRET": secret, "EC_TEST_ACCESS": "AKIDFROMENV"}
    for args in (["list-templates"], ["list-templates", "--json"], ["-vvv", "list-templates"]):
        result = cli("-c", str(path), *args, env=env)
        no_traceback(result)
        assert result.returncode == 0, result.output
        assert secret not in result.output
        assert "can be read by other users" not in result.stderr


def test_invalid_value_from_env_is_not_shown(write_config, monkeypatch):
    monkeypatch.setenv("EC_TEST_PORT", "port-7777-from-env")
    text = set_key(VALID_CONFIG, LOGIN, "ssh_port", "${EC_TEST_PORT}")
    problems = load_config(write_config(text)).skipped["slurm"]
    assert len(problems) == 1 and "ssh_port = *** cannot be read" in problems[0], problems
    assert "port-7777-from-env" not in problems[0]


def test_percent_interpolation(write_config):
    text = VALID_CONFIG.replace("[cloud/hobbes]", "[DEFAULT]\nimage_family = ami\n\n[cloud/hobbes]")
    text = set_key(text, CLUSTER, "image_serial", "00000099")
    text = set_key(text, CLUSTER, "image_id", "%(image_family)s-%(image_serial)s")
    text = set_key(text, CLUSTER, "flavor", "100%%-small")
    config = load_config(write_config(text))
    compute = config.templates["slurm"].kinds["compute"]
    assert compute.image_id == "ami-00000099"
    assert compute.flavor == "100%-small"


def test_percent_interpolation_missing_key(write_config):
    text = set_key(VALID_CONFIG, CLUSTER, "image_id", "%(image_serial)s")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert problems == [f"{path}:{key_line(text, CLUSTER, 'image_id')}: [{CLUSTER}] image_id: refers to "
                        "%(image_serial)s, but [cluster/slurm] and [DEFAULT] have no key 'image_serial'"]


def test_percent_interpolation_loop(write_config):
    text = set_key(set_key(VALID_CONFIG, CLUSTER, "a", "%(b)s"), CLUSTER, "b", "%(a)s")
    text = set_key(text, CLUSTER, "flavor", "%(a)s")
    problems = load_config(write_config(text)).skipped["slurm"]
    assert any("flavor: %(...)s references loop" in p for p in problems), problems


def test_percent_and_env_together(write_config, monkeypatch):
    monkeypatch.setenv("EC_TEST_ZONE", "west")
    text = set_key(VALID_CONFIG, CLUSTER, "zone", "${EC_TEST_ZONE}")
    text = set_key(text, CLUSTER, "image_id", "ami-%(zone)s")
    assert load_config(write_config(text)).templates["slurm"].kinds["frontend"].image_id == "ami-west"


def test_tilde_expansion_of_key_paths(write_config, home):
    template = load_config(write_config(VALID_CONFIG)).templates["slurm"]
    assert template.login["user_key_private"] == str(home / ".ssh" / "id_rsa")
    assert template.login["user_key_public"] == str(home / ".ssh" / "id_rsa.pub")


def test_tilde_in_config_path(home):
    (home / "conf").mkdir()
    (home / "conf" / "ec").write_text(VALID_CONFIG)
    (home / "conf" / "ec").chmod(0o600)
    assert list(load_config("~/conf/ec").templates) == ["slurm"]


# -- credentials from the environment -----------------------------------------------


def test_credentials_from_environment_fallback(write_config, monkeypatch):
    text = drop_key(drop_key(VALID_CONFIG, CLOUD, "ec2_access_key"), CLOUD, "ec2_secret_key")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert len(problems) == 2 and all("(or set AWS_" in p for p in problems), problems
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    monkeypatch.setenv("EC2_SECRET_KEY", "secret-from-second-fallback")
    config = load_config(path)
    cloud = config.templates["slurm"].cloud
    assert cloud["ec2_access_key"] == "AKIDFROMENVIRONMENT"
    assert cloud["ec2_secret_key"] == "secret-from-second-fallback"
    assert "secret-from-second-fallback" in config.secrets


def test_file_value_beats_environment_fallback(write_config, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    cloud = load_config(write_config(VALID_CONFIG)).templates["slurm"].cloud
    assert cloud["ec2_access_key"] == "AKIDEXAMPLE"


def test_openstack_credentials_from_os_variables(write_config, monkeypatch):
    text = VALID_CONFIG.replace(VALID_CONFIG.split("[login/")[0], "[cloud/hobbes]\nprovider = openstack\n\n")
    path = write_config(text)
    problems = load_config(path).skipped["slurm"]
    assert {p.split("required key ")[1].split("'")[1] for p in problems} == \
        {"auth_url", "username", "password", "project_name"}
    for name, value in (("OS_AUTH_URL", "https://keystone.example.org:5000/v3"), ("OS_USERNAME", "me"),
                        ("OS_PASSWORD", "os-password-value"), ("OS_TENANT_NAME", "tenant-1")):
        monkeypatch.setenv(name, value)
    cloud = load_config(path).templates["slurm"].cloud
    assert cloud["project_name"] == "tenant-1"
    assert cloud["auth_url"] == "https://keystone.example.org:5000/v3"


# -- permissions -------------------------------------------------------------------


def test_readable_file_with_literal_secret_is_warned(cli, write_config):
    path = write_config(VALID_CONFIG, mode=0o644)
    for args in (["list-templates"], ["-vvv", "list-templates", "--json"]):
        result = cli("-c", str(path), *args)
        no_traceback(result)
        assert result.returncode == 0
        assert f"{path} can be read by other users and holds secrets (ec2_secret_key)" in result.stderr
        assert f"chmod 600 {path}" in result.stderr
        assert SECRET not in result.output


def test_private_file_is_not_warned(cli, write_config):
    result = cli("-c", str(write_config(VALID_CONFIG, mode=0o600)), "list-templates")
    assert result.returncode == 0
    assert "can be read by other users" not in result.stderr


def test_readable_file_with_placeholder_secret_is_not_warned(cli, write_config):
    text = set_key(VALID_CONFIG, CLOUD, "ec2_secret_key", "****REPLACE WITH YOUR SECRET KEY****")
    result = cli("-c", str(write_config(text, mode=0o644)), "list-templates")
    assert "can be read by other users" not in result.stderr


def test_readable_d_file_with_passthrough_key_is_warned(cli, write_config):
    """A libcloud provider's ``key`` is a secret too (regression: it was not warned about)."""
    main = write_config(VALID_CONFIG.replace("[cloud/hobbes]", "[cloud/unused]"))
    token = "dop_v1_0123456789abcdef"
    write_config(f"[cloud/hobbes]\nprovider = digitalocean\nkey = {token}\nlocation = nyc1\n", "config.d/do.conf",
                 mode=0o644)
    result = cli("-vvv", "-c", str(main), "list-templates", "--json")
    no_traceback(result)
    assert result.returncode == 0, result.output
    assert "do.conf can be read by other users and holds secrets (key)" in result.stderr
    assert token not in result.output


def test_config_path_that_is_a_folder(cli, tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    result = cli("-c", str(folder), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert f"cannot read configuration file {folder}" in result.stderr


def test_unparseable_d_file_is_named(cli, write_config):
    main = write_config(VALID_CONFIG)
    bad = write_config("[cluster/slurm]\nthis line has no equals sign\n", "config.d/bad.conf")
    result = cli("-c", str(main), "list-templates")
    no_traceback(result)
    assert result.returncode == 2
    assert f"cannot parse configuration file {bad}" in result.stderr
    assert f"{bad}:2: cannot parse 'this line has no equals sign'; expected [type/name] or key = value" \
        in result.stderr


def test_a_large_config_is_read_in_one_pass(write_config, monkeypatch):
    """Each key's line was found by scanning the file again: a 1 MB config took 70 s. The lines
    of all keys are now indexed in one pass: the key pattern is matched a few times per line."""
    from elasticcluster.config import reader

    calls = []
    pattern = reader._KEY

    class Counting:
        def match(self, text):
            calls.append(text)
            return pattern.match(text)

    lines = [f"global_var_v{i} = value {i}" for i in range(6000)]
    text = VALID_CONFIG + "\n[setup/ansible-slurm]\n" + "\n".join(lines) + "\n"
    monkeypatch.setattr(reader, "_KEY", Counting())
    config = load_config(write_config(text))
    assert config.templates["slurm"].global_vars["v5999"] == "value 5999"
    assert len(calls) <= 3 * len(text.splitlines())
