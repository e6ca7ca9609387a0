"""The mapping files (drivers/*.toml) are parsed once and kept while unchanged (cloud_catalog)."""
from __future__ import annotations

import json
import tomllib

import pytest

from elasticcluster import cloud_catalog
from elasticcluster.resources import bundled_dir


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ELASTICCLUSTER_NO_DRIVER_CACHE", raising=False)
    cloud_catalog._parsed_store.cache_clear()
    yield tmp_path / "cache" / "elasticcluster" / "mappings.json"
    cloud_catalog._parsed_store.cache_clear()


def _no_parser(monkeypatch):
    def refuse(stream):
        raise AssertionError("parsed again")

    monkeypatch.setattr(tomllib, "load", refuse)


def test_a_mapping_file_is_parsed_again_only_when_it_changes(fresh_store, tmp_path, monkeypatch):
    path = tmp_path / "family.toml"
    path.write_text('[provider]\nnames = ["one"]\n')
    assert cloud_catalog._read_toml(path) == {"provider": {"names": ["one"]}}
    assert str(path) in json.loads(fresh_store.read_text())["files"]
    cloud_catalog._parsed_store.cache_clear()  # a new process
    with monkeypatch.context() as patch:
        _no_parser(patch)
        assert cloud_catalog._read_toml(path) == {"provider": {"names": ["one"]}}
    path.write_text('[provider]\nnames = ["one", "two"]\n')
    assert cloud_catalog._read_toml(path) == {"provider": {"names": ["one", "two"]}}


def test_the_bundled_files_read_from_the_store_are_what_the_parser_gives(fresh_store, monkeypatch):
    files = sorted(bundled_dir("drivers").glob("*.toml"))
    parsed = {path: cloud_catalog._read_toml(path) for path in files}
    cloud_catalog._parsed_store.cache_clear()
    _no_parser(monkeypatch)
    for path in files:
        with open(path, "rb") as stream:
            assert cloud_catalog._read_toml(path) == parsed[path] == tomllib.loads(stream.read().decode())


def test_no_driver_cache_parses_afresh(fresh_store, tmp_path, monkeypatch):
    path = tmp_path / "family.toml"
    path.write_text("a = 1\n")
    cloud_catalog._read_toml(path)
    monkeypatch.setenv("ELASTICCLUSTER_NO_DRIVER_CACHE", "1")
    cloud_catalog._parsed_store.cache_clear()
    _no_parser(monkeypatch)
    with pytest.raises(AssertionError, match="parsed again"):
        cloud_catalog._read_toml(path)
