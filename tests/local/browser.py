"""A headless Chromium (Debian's ``chromium``) for the web frontends of local nodes.

It may reach one address, a node of ours, and nothing else: every other host
name resolves to nothing and every other address goes to a proxy on loopback
that does not exist (Chromium still tries to phone home, with the flags that
ask it not to). What it loaded is read from its network log: the status of
every request the pages made, their scripts' requests included.
"""
from __future__ import annotations

import html
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Load:
    """What a run of the browser loaded: url -> the HTTP status line of each time it was fetched
    from the server (``net error N`` when that failed); a url the pages asked for again was served
    from the browser's cache, which keeps successful answers only."""

    statuses: dict[str, list[str]] = field(default_factory=dict)
    dom: str = ""

    def failed(self, host: str) -> dict[str, list[str]]:
        """The urls of ``host`` that were never fetched, or not always with 200."""
        return {url: answers for url, answers in self.statuses.items()
                if urlparse(url).hostname == host
                and (not answers or not all(answer.endswith(" 200 OK") for answer in answers))}

    def reached(self, host: str) -> list[str]:
        return [url for url in self.statuses if urlparse(url).hostname == host]


def _flags(host: str, workdir: Path) -> list[str]:
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-domain-reliability", "--no-pings", "--disable-breakpad",
            f"--user-data-dir={workdir / 'profile'}", "--window-size=1280,1400",
            f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
            "--proxy-server=socks5://127.0.0.1:9", f"--proxy-bypass-list={host}"]


def _statuses(netlog: Path) -> dict[str, list[str]]:
    log = json.loads(netlog.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls, answers, cached = {}, {}, set()
    for event in log["events"]:
        kind, source, params = names.get(event["type"]), event["source"]["id"], event.get("params") or {}
        if kind == "REQUEST_ALIVE" and "url" in params:
            urls[source] = params["url"]
        elif kind == "HTTP_CACHE_READ_INFO":
            cached.add(source)
        elif kind == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS":
            answers[source] = params["headers"][0]
        elif "net_error" in params and source not in answers:
            answers[source] = f"net error {params['net_error']}"
    statuses: dict[str, list[str]] = {}
    for source, url in urls.items():
        fetched = statuses.setdefault(url, [])
        if source in answers:
            fetched.append(answers[source])
        elif source not in cached:
            fetched.append("no answer")
    return statuses


def load_pages(host: str, urls: list[str], workdir: Path, budget_ms: int = 20000) -> Load:
    """Load every page of ``urls`` (on ``host``) at once, each in a frame of one local page, and
    let their scripts run for ``budget_ms`` of the browser's virtual time."""
    workdir.mkdir(parents=True, exist_ok=True)
    frames = "\n".join(f'<iframe src="{html.escape(url)}" width="1200" height="800"></iframe>' for url in urls)
    index = workdir / "pages.html"
    index.write_text(f"<!doctype html><html><body>{frames}</body></html>")
    netlog = workdir / "netlog.json"
    proc = subprocess.run([*_flags(host, workdir), f"--log-net-log={netlog}", f"--virtual-time-budget={budget_ms}",
                           "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Load(_statuses(netlog), proc.stdout)


def screenshot(host: str, url: str, path: Path, workdir: Path, budget_ms: int = 10000) -> Path:
    """A PNG of ``url`` as the browser shows it, once its scripts ran."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([*_flags(host, workdir), f"--virtual-time-budget={budget_ms}", f"--screenshot={path}",
                           url], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and path.exists(), proc.stderr[-2000:]
    return path
