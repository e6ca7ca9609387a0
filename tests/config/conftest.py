"""Fixtures for the configuration tests."""
from __future__ import annotations

import pytest

from elasticcluster.cloud_catalog import mapped_families


def _fallback_variables() -> set[str]:
    names = set()
    for family in mapped_families().values():
        for spec in family.keys.values():
            names.update(spec.env)
    return names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No credential of the machine running the tests leaks into them (nor a cache switch)."""
    for name in sorted(_fallback_variables()) + ["ELASTICCLUSTER_NO_CACHE"]:
        monkeypatch.delenv(name, raising=False)
