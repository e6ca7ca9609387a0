"""The bundled Ganglia playbook (seed 4.4.4) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes: gmetad on the
master collects every node (its XML on port 8651 names them all, gstat counts
them), the web frontend answers http://MASTER/ganglia/ with a whole page that
shows every node (and stays whole while gmetad starts afresh), a second setup
changes nothing, and a node taken away by remove-node leaves gmetad's data.
"""
from __future__ import annotations

import re
import shlex

import pytest

from tests.local.conftest import assert_setup_changes_nothing

pytestmark = pytest.mark.slow

# run on the master: the host names in gmetad's XML (port 8651 answers localhost)
GMETAD_HOSTS = """\
import re, socket
with socket.create_connection(("127.0.0.1", 8651), timeout=10) as sock:
    data = b"".join(iter(lambda: sock.recv(65536), b""))
print(data.count(b"<CLUSTER "), *sorted({h.decode() for h in re.findall(rb'<HOST NAME="([^"]+)"', data)}))
"""

# run on the master: the status and body of a web page
FETCH = """\
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=60) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as err:
    status, body = err.code, err.read()
print(status)
sys.stdout.write(body.decode(errors="replace"))
"""

# run on the master: restart gmetad and the collecting gmond with no RRDs, then
# fetch the page for 30 s; print how many fetches, how many while the summary
# RRD existed, and how many pages were cut short
RESTART_AND_FETCH = """\
import os, subprocess, sys, time, urllib.request
subprocess.run("systemctl stop gmetad ganglia-monitor && rm -rf /var/lib/ganglia/rrds/*"
               " && systemctl start ganglia-monitor gmetad", shell=True, check=True)
summary = f"/var/lib/ganglia/rrds/{sys.argv[1]}/__SummaryInfo__/load_one.rrd"
fetched = with_summary = cut_short = 0
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    exists = os.path.exists(summary)
    with urllib.request.urlopen(sys.argv[2], timeout=60) as response:
        page = response.read()
    fetched += 1
    with_summary += exists
    cut_short += not page.rstrip().endswith(b"</html>")
    time.sleep(0.25)
print(fetched, with_summary, cut_short)
"""


def python_on(local, name: str, code: str, *args: str, sudo: bool = False):
    return local("ssh", name, "--", shlex.join(["sudo"] * sudo + ["python3", "-c", code, *args]))


def test_ganglia_collects_every_node_and_serves_its_web_page(local):
    name = "gg-e2e1"
    local.start("local-ganglia", name)
    try:
        nodes = ["compute001", "compute002", "frontend001"]
        # gmetad collects every node, under one cluster named after ours
        result = python_on(local, name, GMETAD_HOSTS)
        assert result.returncode == 0, result.output
        clusters, *hosts = result.stdout.split()
        assert clusters == "1" and hosts == nodes, result.stdout
        result = local("ssh", name, "--", "gstat --all --single_line")
        assert result.returncode == 0, result.output
        assert f"Name: {name}" in result.stdout and re.search(r"Hosts: 3\b", result.stdout), result.stdout
        assert re.search(r"Dead Hosts: 0\b", result.stdout), result.stdout
        # the web frontend: the cluster page and a host page are whole pages naming the nodes
        result = python_on(local, name, FETCH, "http://localhost/ganglia/")
        assert result.returncode == 0, result.output
        status, page = result.stdout.split("\n", 1)
        assert status == "200", result.stdout[-2000:]
        assert f"{name} Cluster Report" in page and page.rstrip().endswith("</html>"), page[-2000:]
        assert all(node in page for node in nodes), page
        result = python_on(local, name, FETCH, f"http://localhost/ganglia/?c={name}&h=compute002")
        status, page = result.stdout.split("\n", 1)
        assert status == "200" and page.rstrip().endswith("</html>"), result.stdout[-2000:]
        assert "compute002" in page
        result = python_on(local, name, FETCH, f"http://localhost/ganglia/graph.php?c={name}&h=compute001&m=load_one")
        status, page = result.stdout.split("\n", 1)
        assert status == "200" and "PNG" in page[:8], result.stdout[:200]
        # as after a reboot of the master: while gmetad's fresh summary RRDs hold
        # no data yet (rrdtool prints "-nan" for them), every page is still whole
        result = python_on(local, name, RESTART_AND_FETCH, name, "http://localhost/ganglia/", sudo=True)
        assert result.returncode == 0, result.output
        fetched, with_summary, cut_short = map(int, result.stdout.split())
        assert with_summary > 0 and cut_short == 0, result.stdout
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name, nodes)
        # a removed node leaves gmetad's data (remove-node sets the others up again)
        result = local("remove-node", name, "compute002", "--yes", timeout=1500)
        assert result.returncode == 0, result.output
        result = python_on(local, name, GMETAD_HOSTS)
        assert result.returncode == 0, result.output
        assert result.stdout.split() == ["1", "compute001", "frontend001"], result.stdout
    finally:
        assert local("stop", name, "--yes").returncode == 0
