"""Progress of the setup step on the terminal: a live rich view, or plain lines when piped."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from elasticcluster.playbook import Listener


class PlainProgress(Listener):
    """Plays, and failed or unreachable hosts, as lines on stderr.

    A play is shown once it does something on a node: site.yml has plays for every
    service, and those this cluster does not have (no host, or every task skipped, like
    NFS where the cloud shares /home) are not shown.
    """

    def __init__(self):
        self.pending: str | None = None

    def play(self, name: str) -> None:
        self.pending = name

    def result(self, event: dict) -> None:
        if self.pending is not None and event.get("status") != "skipped":
            print(f"setup: {self.pending}", file=sys.stderr, flush=True)
            self.pending = None
        if event.get("status") in ("failed", "unreachable"):
            print(f"setup: {event['host']}: {event['status']}: {event.get('task', '')}",
                  file=sys.stderr, flush=True)


class LiveProgress(Listener):
    """A rich live table: the current play and task, and per host ok/changed/failed counts."""

    def __init__(self, hosts: list[str]):
        from rich.console import Console
        from rich.live import Live

        self.hosts = {h: {"ok": 0, "changed": 0, "failed": 0, "last": ""} for h in hosts}
        self.play_name = ""
        self.task_name = ""
        self.live = Live(self._render(), console=Console(stderr=True), refresh_per_second=8, transient=False)
        self.live.start()

    def _render(self):
        from rich.table import Table

        table = Table(title=f"{self.play_name}: {self.task_name}", title_justify="left", expand=False)
        for column in ("host", "ok", "changed", "failed", "last task"):
            table.add_column(column)
        for host, counts in self.hosts.items():
            failed = str(counts["failed"]) if not counts["failed"] else f"[red]{counts['failed']}[/red]"
            table.add_row(host, str(counts["ok"]), str(counts["changed"]), failed, counts["last"])
        return table

    def play(self, name: str) -> None:
        self.play_name = name
        self.live.update(self._render())

    def task(self, name: str) -> None:
        self.task_name = name
        self.live.update(self._render())

    def result(self, event: dict) -> None:
        counts = self.hosts.setdefault(event["host"], {"ok": 0, "changed": 0, "failed": 0, "last": ""})
        status = event.get("status")
        if status == "ok":
            counts["ok"] += 1
            counts["changed"] += int(bool(event.get("changed")))
        elif status in ("failed", "unreachable"):
            counts["failed"] += 1
        counts["last"] = event.get("task", "")[:50]
        self.live.update(self._render())

    def close(self) -> None:
        self.live.stop()


def listener_for(hosts: list[str], verbosity: int) -> Listener:
    if verbosity >= 1:
        return Listener()  # ansible's own output is shown
    if sys.stderr.isatty():
        return LiveProgress(hosts)
    return PlainProgress()


@contextmanager
def autoscale_status(cluster: str, once: bool):
    """What ``autoscale`` shows of each round: a live table on a terminal, a line when it changes."""
    if sys.stderr.isatty() and not once:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        def render(found) -> Table:
            table = Table(title=f"autoscale {cluster}", title_justify="left")
            for column in ("wanted", "starting", "up", "going", "failed"):
                table.add_column(column)
            table.add_row(*(", ".join(getattr(found, c)) or "-" for c in ("wanted", "starting", "up", "going",
                                                                          "failed")))
            return table

        with Live(console=Console(stderr=True), refresh_per_second=4, transient=False) as live:
            yield lambda found: live.update(render(found))
        return
    last = [None]

    def line(found) -> None:
        text = (f"autoscale {cluster}: wanted {len(found.wanted)}, starting {len(found.starting)}, "
                f"up {len(found.up)} ({', '.join(found.up) or '-'}), going {len(found.going)}"
                + (f", failed {', '.join(found.failed)}" if found.failed else ""))
        if text != last[0]:
            print(text, file=sys.stderr, flush=True)
            last[0] = text

    yield line
