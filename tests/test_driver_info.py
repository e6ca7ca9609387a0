"""What a libcloud driver takes, read from its code and kept on disk (elasticcluster/driver_info.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from libcloud.compute.providers import get_driver

from elasticcluster import driver_info


def test_types_come_from_defaults_annotations_and_docstrings():
    linode = driver_info.read(driver_info.concrete_class(get_driver("linode"), {"key": "k"}))
    # __new__ compares api_version with the text "4.0": text, though __init__ defaults it to None
    assert linode.init["api_version"].type == "string"
    assert linode.create["ex_private_ip"].type == "boolean"  # from its default
    assert linode.create["ex_authorized_keys"].type == "list"  # from ":type ex_authorized_keys: list of str"
    cloudstack = driver_info.read(get_driver("cloudstack"))
    assert cloudstack.init["port"].type == "integer"  # documented by BaseDriver, further up
    assert (cloudstack.create["networks"].type, cloudstack.create["networks"].of) == ("list", "CloudStackNetwork")
    vultr = driver_info.read(driver_info.concrete_class(get_driver("vultr"), {"key": "k"}))
    assert vultr.create["ex_enable_ipv6"].type == "boolean"  # from its annotation
    assert vultr.create["location"].required and vultr.create["location"].of == "NodeLocation"


def test_values_are_read_as_the_parameter_takes_them():
    param = driver_info.Param
    assert driver_info.convert(param("api_version", False, "string"), "4.0") == "4.0"
    assert driver_info.convert(param("port", False, "integer"), "8080") == 8080
    assert driver_info.convert(param("ex_spot", False, "boolean"), "yes") is True
    assert driver_info.convert(param("keys", False, "list"), "a, b") == ["a", "b"]
    assert driver_info.convert(param("attrs", False, "dict"), "a=1, b=x") == {"a": 1, "b": "x"}
    assert driver_info.convert(param("untyped", False, None), "3") == 3


def test_the_constructor_picks_its_class_and_a_refusal_names_the_argument():
    info = driver_info.driver_for("digitalocean", None, {"key": "k", "region": "nyc1"},
                                  lambda: get_driver("digitalocean"))
    assert info.name == "DigitalOcean_v2_NodeDriver"  # the class the constructor would make
    assert info.refused.startswith("region: ")


def _second_run(tmp_path, code: str) -> subprocess.CompletedProcess:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_what_was_read_is_used_again_without_importing_libcloud(tmp_path):
    code = """
import sys
from elasticcluster import driver_info
def load():
    from libcloud.compute.providers import get_driver
    return get_driver("linode")
info = driver_info.driver_for("linode", None, {"key": "s3cr3t-key", "api_version": "4.0"}, load)
print(info.name, "libcloud" in sys.modules)
"""
    first = _second_run(tmp_path, code)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["LinodeNodeDriverV4", "True"]
    second = _second_run(tmp_path, code)
    assert second.stdout.split() == ["LinodeNodeDriverV4", "False"], second.stderr
    stored = (tmp_path / "cache" / "elasticcluster" / "drivers.json").read_text()
    assert "s3cr3t-key" not in stored  # the values of secrets are never kept
    assert json.loads(stored)["libcloud"] == json.loads(json.dumps(driver_info.libcloud_stamp()))
    assert oct((tmp_path / "cache" / "elasticcluster" / "drivers.json").stat().st_mode & 0o777) == "0o600"


def test_another_libcloud_makes_the_table_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ELASTICCLUSTER_NO_DRIVER_CACHE", raising=False)
    driver_info.forget_store()
    loads = []

    def load():
        loads.append(1)
        return get_driver("gandi")

    driver_info.driver_for("gandi", None, {"key": "k"}, load)
    driver_info.forget_store()
    driver_info.driver_for("gandi", None, {"key": "k"}, load)
    assert len(loads) == 1
    monkeypatch.setattr(driver_info, "libcloud_stamp", lambda: [["libcloud/__init__.py", 1, 2], None])
    driver_info.forget_store()
    driver_info.driver_for("gandi", None, {"key": "k"}, load)
    assert len(loads) == 2
    driver_info.forget_store()
