"""Run ansible-playbook on a cluster (the setup step, seed 4.3.6).

``ansible-playbook`` runs as a subprocess with the generated inventory and
settings tuned for speed and safety (pipelining, forks sized to the cluster,
facts gathered once and cached, no retry files, host keys checked against the
cluster's known_hosts). A callback of ours reports plays, tasks and results as
JSON lines on a pipe: elasticcluster shows progress from them and, at the end,
the failed task and its message for each failed host. Ansible's own output
goes to the terminal with ``-v``, else to ``STORAGE/NAME.ansible.log``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from elasticcluster.cluster import Cluster
from elasticcluster.exceptions import ConfigurationError, ElasticClusterError
from elasticcluster.inventory import write_inventory
from elasticcluster.resources import default_playbook

log = logging.getLogger("elasticcluster")

PLUGINS = Path(__file__).resolve().parent / "ansible_plugins"


class SetupFailed(ElasticClusterError):
    """ansible-playbook failed on some hosts (or did not run)."""


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookRun:
    returncode: int
    failures: list[Failure] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    log_path: Path | None = None


class Listener:
    """What the runner tells about progress (the CLI renders it)."""

    def play(self, name: str) -> None: ...
    def task(self, name: str) -> None: ...
    def result(self, event: dict) -> None: ...
    def close(self) -> None: ...


def ansible_environment(cluster: Cluster, template, *, verbosity: int) -> dict[str, str]:
    """ANSIBLE_* settings: elasticcluster's defaults, then the setup section's ``ansible_*`` keys."""
    storage = Path(cluster.repository.storage_path)
    forks = max(5, min(len(cluster.get_all_nodes()), 64))
    env = {
        "ANSIBLE_PIPELINING": "True" if template.setup.get("ssh_pipelining", True) else "False",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(storage / f"{cluster.name}.facts"),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s",
        "ANSIBLE_CALLBACK_PLUGINS": str(PLUGINS / "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "elasticcluster_events",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_NOCOLOR": "False" if verbosity and sys.stdout.isatty() else "True",
        "ANSIBLE_FORCE_COLOR": "True" if verbosity and sys.stdout.isatty() else "False",
    }
    for key, value in template.setup.items():
        if key.startswith("ansible_"):
            env[key.upper()] = _text(value)
    if env.get("ANSIBLE_STRATEGY", "").startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_path()
    return env


def _text(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def mitogen_strategy_path() -> str:
    """The folder of mitogen's Ansible strategy plugins, if mitogen is installed."""
    try:
        import ansible_mitogen
    except ImportError:
        raise ConfigurationError("ansible_strategy = mitogen_*: mitogen is not installed "
                                 "(pip install mitogen)") from None
    return str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")


def ansible_playbook() -> str:
    """The ansible-playbook of this Python environment (or the one on PATH)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if not found:
        raise SetupFailed("ansible-playbook is not installed: pip install ansible-core")
    return found


def run_playbook(cluster: Cluster, template, *, extra_args: list[str] = (), verbosity: int = 0,
                 listener: Listener | None = None) -> PlaybookRun:
    """Run the setup section's playbook (default: the bundled site.yml) on ``cluster``."""
    listener = listener or Listener()
    playbook = Path(template.setup.get("playbook_path") or default_playbook()).expanduser()
    if not playbook.exists():
        raise ConfigurationError(f"[setup/{template.setup_name}] playbook_path: {playbook} does not exist")
    inventory = write_inventory(cluster, template)
    (Path(cluster.repository.storage_path) / f"{cluster.name}.facts").mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ)
    env.update(ansible_environment(cluster, template, verbosity=verbosity))
    command = [ansible_playbook(), "-i", str(inventory), str(playbook), *extra_args]
    if verbosity >= 2:
        command.append("-" + "v" * (verbosity - 1))
    log_path = Path(cluster.repository.storage_path) / f"{cluster.name}.ansible.log"
    read_fd, write_fd = os.pipe()
    env["ELASTICCLUSTER_EVENTS_FD"] = str(write_fd)
    run = PlaybookRun(returncode=-1, log_path=log_path)
    output = None if verbosity >= 1 else open(log_path, "w")
    try:
        if output is not None:
            os.chmod(log_path, 0o600)
        log.debug("running %s", " ".join(command))
        proc = subprocess.Popen(command, env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT if output else None)
        os.close(write_fd)
        reader = threading.Thread(target=_read_events, args=(read_fd, run, listener), daemon=True)
        reader.start()
        try:
            run.returncode = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        reader.join(timeout=10)
    finally:
        listener.close()
        if output is not None:
            output.close()
    return run


def _read_events(fd: int, run: PlaybookRun, listener: Listener) -> None:
    with os.fdopen(fd, "r") as stream:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "play":
                listener.play(event.get("name", ""))
            elif kind == "task":
                listener.task(event.get("name", ""))
            elif kind == "result":
                if event.get("status") in ("failed", "unreachable"):
                    run.failures.append(Failure(event["host"], event.get("task", ""), event.get("msg", ""),
                                                event["status"] == "unreachable"))
                listener.result(event)
            elif kind == "stats":
                run.stats = event.get("hosts", {})


def failure_report(run: PlaybookRun) -> str:
    """One line per failed host: the task that failed and its message."""
    last: dict[str, Failure] = {}
    for failure in run.failures:
        last[failure.host] = failure
    lines = []
    for host, failure in sorted(last.items()):
        what = "unreachable" if failure.unreachable else f"task '{failure.task}' failed"
        message = " ".join(failure.message.split())
        lines.append(f"{host}: {what}: {message[:300]}" if message else f"{host}: {what}")
    return "\n".join(lines)


class AnsibleSetupProvider:
    """The seed's setup provider: configures a cluster with the template's playbook."""

    def __init__(self, template, verbosity: int = 0, listener: Listener | None = None):
        self.template = template
        self.verbosity = verbosity
        self.listener = listener

    def setup_cluster(self, cluster: Cluster, extra_args: list[str] = ()) -> bool:
        """Run the playbook (idempotent); True when every host succeeded."""
        run = run_playbook(cluster, self.template, extra_args=list(extra_args), verbosity=self.verbosity,
                           listener=self.listener)
        if run.returncode != 0:
            log.error("setup of cluster '%s' failed:\n%s", cluster.name, failure_report(run))
        return run.returncode == 0

    def cleanup(self, cluster: Cluster) -> None:
        from elasticcluster.inventory import inventory_path

        inventory_path(cluster).unlink(missing_ok=True)
