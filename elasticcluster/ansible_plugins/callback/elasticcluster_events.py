"""Ansible callback: one JSON line per play, task and host result, for elasticcluster's progress.

Writes to the file descriptor named by ELASTICCLUSTER_EVENTS_FD; does nothing without it.
A play is told of when its first task starts: ``site.yml`` has a play per service, and
those that match no host of this cluster run no task, so they are not shown.

For each successful task that writes a file, starts a service or makes a user on a host,
a ``manages`` line names it (``elasticcluster.converged`` digests them after a whole setup).
Results of tasks delegated to another host are not counted.
"""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: elasticcluster_events
    type: notification
    short_description: machine-readable progress for elasticcluster
    description: Writes JSON lines about plays, tasks and results to ELASTICCLUSTER_EVENTS_FD.
"""

_LIMIT = 600


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "elasticcluster_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        fd = os.environ.get("ELASTICCLUSTER_EVENTS_FD")
        self._out = os.fdopen(int(fd), "w", buffering=1) if fd else None
        self._task = None
        self._play = None

    def _emit(self, **event):
        if self._out is None:
            return
        try:
            self._out.write(json.dumps(event) + "\n")
        except (OSError, ValueError):
            self._out = None

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name().strip()

    def _play_started(self):
        if self._play is not None:
            self._emit(event="play", name=self._play)
            self._play = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._play_started()
        self._task = task.get_name().strip()
        self._emit(event="task", name=self._task)

    def v2_playbook_on_handler_task_start(self, task):
        self._play_started()
        self._task = task.get_name().strip()
        self._emit(event="task", name=self._task, handler=True)

    def _result(self, status, result, **extra):
        data = result._result
        message = data.get("msg") or data.get("stderr") or data.get("reason") or ""
        if not message and status == "failed":
            message = data.get("stdout") or json.dumps({k: v for k, v in data.items()
                                                        if not k.startswith("_")})[:_LIMIT]
        self._emit(event="result", status=status, host=result._host.get_name(),
                   task=result._task.get_name().strip(), changed=bool(data.get("changed")),
                   msg=str(message)[:_LIMIT], **extra)

    def _manages(self, result):
        data = result._result
        if not isinstance(data, dict) or data.get("_ansible_delegated_vars") or "results" in data:
            return
        try:
            from elasticcluster.converged import what_a_result_manages

            found = what_a_result_manages(str(result._task.action), data, dict(result._task.args or {}))
        except Exception:  # noqa: BLE001 (progress reporting never fails a setup)
            return
        if found:
            self._emit(event="manages", host=result._host.get_name(), what=found[0], name=found[1])

    def v2_runner_on_ok(self, result):
        self._manages(result)
        self._result("ok", result)

    def v2_runner_item_on_ok(self, result):
        self._manages(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            hosts[host] = {k: summary.get(k, 0) for k in ("ok", "changed", "failures", "unreachable",
                                                           "skipped", "rescued", "ignored")}
        self._emit(event="stats", hosts=hosts)
