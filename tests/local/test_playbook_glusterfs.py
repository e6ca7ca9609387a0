"""GlusterFS on real nodes of the local cloud: the bundled `local-glusterfs` template
(2 servers, each with one brick of a replicated volume (2 copies of every file: the default
for an even number of servers), and 2 clients mounting it with FUSE). Losing one server's
brick loses no file."""
from __future__ import annotations

import os
import re
import uuid

import pytest

from tests.local.conftest import assert_setup_changes_nothing

pytestmark = pytest.mark.slow
VOLUME_INFO = "sudo gluster volume info glusterfs"


def test_glusterfs_file_written_on_one_client_is_read_on_another(local):
    name = "gl-hpc1"
    start = local("start", "local-glusterfs", "-n", name)
    try:
        if start.returncode != 0 and not os.path.exists("/dev/fuse"):
            # the servers' part still has to work: check it, then say what is missing
            result = local("ssh", name, "-n", "server001", "--", VOLUME_INFO)
            assert "Status: Started" in result.stdout, result.output
            assert "Number of Bricks: 2" in result.stdout, result.output
            pytest.skip("this machine has no /dev/fuse, so the local nodes cannot mount GlusterFS "
                        "(glusterfs-client is FUSE); the volume was made and started")
        assert start.returncode == 0, start.output
        # the volume: a copy of every file on each server's brick, started
        result = local("ssh", name, "-n", "server001", "--", VOLUME_INFO)
        assert result.returncode == 0, result.output
        assert "Type: Replicate" in result.stdout and "Status: Started" in result.stdout, result.output
        assert "Number of Bricks: 1 x 2 = 2" in result.stdout, result.output
        bricks = re.findall(r"^Brick\d+: \S+:/srv/glusterfs/brick$", result.stdout, re.M)
        assert len(bricks) == 2, result.output
        # mounted with FUSE on both clients, and in their fstab
        for client in ("client001", "client002"):
            result = local("ssh", name, "-n", client, "--",
                           "findmnt -n -o FSTYPE /glusterfs; grep -c glusterfs /etc/fstab")
            assert result.stdout.split() == ["fuse.glusterfs", "1"], result.output
        # a file written on one client (by the admin user) is read on the other
        token = uuid.uuid4().hex
        files = " ".join(f"/glusterfs/probe-{i}" for i in range(8))
        write = f"for f in {files}; do echo {token} > $f; done"
        assert local("ssh", name, "-n", "client001", "--", write).returncode == 0
        result = local("ssh", name, "-n", "client002", "--", f"cat {files}")
        assert result.returncode == 0, result.output
        assert result.stdout.split() == [token] * 8, result.output
        # ... and each server's brick holds all of them
        for server in ("server001", "server002"):
            result = local("ssh", name, "-n", server, "--", "ls /srv/glusterfs/brick | grep -c '^probe-'")
            assert result.stdout.strip() == "8", (server, result.output)
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name)
        # server002 loses its brick (its brick process dies): every file is still read, on both
        # clients, and can still be written
        server002 = next(n["preferred_ip"] for n in local.nodes(name) if n["name"] == "server002")
        brick = re.compile(rf"^Brick {re.escape(server002)}:/srv/glusterfs/brick\s+(\S+)\s+(\S+)\s+([YN])\s+(\S+)",
                           re.M)
        result = local("ssh", name, "-n", "server001", "--", "sudo gluster volume status glusterfs")
        online = brick.search(result.stdout)
        assert online and online.group(3) == "Y", result.output
        result = local("ssh", name, "-n", "server002", "--", f"sudo kill -9 {online.group(4)}")
        assert result.returncode == 0, result.output
        result = local("ssh", name, "-n", "server001", "--", "sleep 2; sudo gluster volume status glusterfs")
        assert brick.search(result.stdout).group(3) == "N", result.output
        for client in ("client001", "client002"):
            result = local("ssh", name, "-n", client, "--", f"cat {files}", timeout=300)
            assert result.returncode == 0 and result.stdout.split() == [token] * 8, (client, result.output)
        result = local("ssh", name, "-n", "client002", "--", "echo after > /glusterfs/after && cat /glusterfs/after")
        assert result.stdout.strip() == "after", result.output
    finally:
        assert local("stop", name, "--yes").returncode == 0
