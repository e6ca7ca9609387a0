"""Lmod on real nodes of the local cloud: the bundled `local-lmod` template (1 frontend + 1 compute),
with the site's module tree on the shared /home."""
from __future__ import annotations

import re

import pytest

from tests.local.conftest import assert_setup_changes_nothing

pytestmark = pytest.mark.slow

MODULEFILE = 'whatis("elasticcluster test module")\nsetenv("EC_LMOD_PROBE", "loaded")\n'


def test_lmod_module_avail_for_the_admin_user(local):
    name = "lm-hpc1"
    local.start("local-lmod", name, timeout=900)
    try:
        for node in ("frontend001", "compute001"):
            # a login shell of the admin user (debian) has `module`; Lmod writes its listing to stderr
            result = local("ssh", name, "-n", node, "--", "bash -lc 'module avail 2>&1'")
            assert result.returncode == 0, result.output
            assert "/usr/share/lmod/lmod/modulefiles" in result.stdout, result.output
            assert re.search(r"\bCore/lmod\b", result.stdout), result.output
        # the site's module tree is on the shared /home: a modulefile the admin user adds there on
        # the frontend (no root needed) is listed and loads on the compute node
        write = ("mkdir -p /home/software/modulefiles/ecprobe && "
                 f"printf '{MODULEFILE}' > /home/software/modulefiles/ecprobe/1.0.lua")
        result = local("ssh", name, "--", write)
        assert result.returncode == 0, result.output
        for node in ("compute001", "frontend001"):
            result = local("ssh", name, "-n", node, "--",
                           "bash -lc 'module avail 2>&1; module load ecprobe && echo $EC_LMOD_PROBE'")
            assert result.returncode == 0, result.output
            assert "/home/software/modulefiles" in result.stdout and "ecprobe/1.0" in result.stdout, result.output
            assert result.stdout.strip().splitlines()[-1] == "loaded", result.output
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name)
    finally:
        assert local("stop", name, "--yes").returncode == 0
