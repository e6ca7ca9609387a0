"""The bundled Ganglia playbook (seed 4.4.4) on real nodes of the local cloud.

One cluster start checks everything, since starts cost minutes: gmetad on the
master collects every node (its XML on port 8651 names them all, gstat counts
them) and its totals are the nodes' flavors (not the machine the containers
run on), every page of the web frontend answers 200 with no PHP error (the
stacked graph, mobile, cubism, reports, views... and every page they link
to) and loads whole in a real headless browser (Chromium; a screenshot of
the cluster page is kept), pages stay whole while gmetad starts afresh, a
second setup changes nothing, and a node taken away by remove-node leaves
gmetad's data.
"""
from __future__ import annotations

import html
import os
import re
import shlex
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urljoin, urlparse

import pytest

from tests.local import browser
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


# run on the master: the cluster's sums of cpu_num and mem_total, from gmetad's summary
GMETAD_TOTALS = """\
import re, socket, sys
with socket.create_connection(("127.0.0.1", 8652), timeout=10) as sock:
    sock.sendall(f"/{sys.argv[1]}?filter=summary\\n".encode())
    data = b"".join(iter(lambda: sock.recv(65536), b""))
sums = dict(re.findall(rb'<METRICS NAME="(cpu_num|mem_total|mem_free)" SUM="([0-9.]+)"', data))
print(*(int(float(sums.get(metric, 0))) for metric in (b"cpu_num", b"mem_total", b"mem_free")))
"""

#: the web frontend's pages: its views and every tab's page (some load into the front page)
PAGES = ["", "?c={c}", "?c={c}&h=compute001", "?c={c}&p=2", "?tab=v", "?tab=ch", "?c={c}&m=cpu_user&r=day",
         "aggregate_graphs.php", "events.php", "breakdown_reports.php", "cubism_form.php", "autorotation.php",
         "tasseo.php", "mobile.php", "stacked.php?m=load_one&c={c}&r=hour",
         "graph_all_periods.php?c={c}&g=load_report&z=large", "graph.php?c={c}&g=mem_report&z=medium&r=month"]
PHP_ERROR = re.compile(r"(Fatal error|<b>Warning</b>|<b>Notice</b>|<b>Deprecated</b>|Uncaught|Parse error)")


def fetch(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a page of the master (from this machine)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode(
                errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, "", err.read().decode(errors="replace")


def page_and_links(pages: list[str]) -> dict[str, str]:
    """Every page, and every page of the frontend it links to, fetched once (one URL per page,
    set of arguments, time range, graph and tab): url -> what is wrong with it ('' when nothing)."""
    def key(url: str):
        query = dict(parse_qsl(urlparse(url).query, keep_blank_values=True))
        return (urlparse(url).path, tuple(sorted(k for k in query if k not in ("st", "_"))),
                query.get("r"), query.get("g"), query.get("tab"))

    found, seen = {}, set()
    todo = [(url, True) for url in pages]
    while todo:
        url, follow = todo.pop(0)
        if key(url) in seen:
            continue
        seen.add(key(url))
        status, ctype, body = fetch(url)
        error = PHP_ERROR.search(body)
        found[url] = f"status {status}" if status != 200 else (body[error.start():][:300] if error else "")
        if follow and "html" in ctype:
            for link in re.findall(r'''(?:href|src)=["']([^"'#]+)''', body):
                link = urljoin(url, html.unescape(link))
                if (urlparse(link).netloc == urlparse(url).netloc and urlparse(link).path.startswith("/ganglia/")
                        and not re.search(r"\.(css|js|png|gif|jpg|ico)$", urlparse(link).path)):
                    todo.append((link, False))
    return found


def check_web_frontend(local, name: str, tmp_path, capsys) -> None:
    ip = next(n["preferred_ip"] for n in local.nodes(name) if n["name"] == "frontend001")
    base = f"http://{ip}/ganglia/"
    pages = [base + page.format(c=name) for page in PAGES]
    found = page_and_links(pages)
    assert len(found) > 2 * len(pages), found
    assert {url: what for url, what in found.items() if what} == {}
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("the web check needs Chromium (.ci/run installs it: apt-get install chromium)")
        pytest.skip("no chromium on this machine for the browser check (apt-get install chromium)")
    # in a real browser every request of every page answers 200: styles, scripts, graphs, and
    # what the pages' scripts fetch (the front page's tabs)
    loaded = browser.load_pages(ip, pages, tmp_path / "browser")
    assert len(loaded.reached(ip)) > 2 * len(pages), loaded.statuses
    failed = {url: answers for url, answers in loaded.failed(ip).items() if urlparse(url).path != "/favicon.ico"}
    assert failed == {}, failed
    shot = browser.screenshot(ip, base + f"?c={name}", tmp_path / "ganglia-cluster.png", tmp_path / "shot")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with capsys.disabled():
        print(f"\nGanglia cluster page, as Chromium shows it: {shot}")


def python_on(local, name: str, code: str, *args: str, sudo: bool = False):
    return local("ssh", name, "--", shlex.join(["sudo"] * sudo + ["python3", "-c", code, *args]))


def test_ganglia_collects_every_node_and_serves_its_web_page(local, tmp_path, capsys):
    name = "gg-hpc1"
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
        # the totals are the nodes' flavors (small: 1 CPU and 1 GiB each), as soon as the nodes'
        # first reports of their size reach gmetad; their free memory is their own (some of it)
        deadline = time.monotonic() + 120
        while (totals := python_on(local, name, GMETAD_TOTALS, name).stdout.split())[:2] != ["3", str(3 << 20)]:
            assert time.monotonic() < deadline, totals
            time.sleep(5)
        assert 0 < int(totals[2]) < 3 << 20, totals
        page = fetch(f"http://{next(n['preferred_ip'] for n in local.nodes(name) if n['name'] == 'frontend001')}"
                     f"/ganglia/?c={name}")[2]
        assert re.search(r"CPUs Total:</td><td[^>]*><B>3</B>", page), page
        check_web_frontend(local, name, tmp_path, capsys)
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
