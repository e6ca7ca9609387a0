"""Run ansible-playbook on a cluster (the setup step, seed 4.3.6).

``ansible-playbook`` runs as a subprocess with the generated inventory and
settings tuned for speed and safety (pipelining, forks sized to the cluster,
facts gathered once and cached, no retry files, host keys checked against the
cluster's known_hosts). A callback of ours reports plays, tasks and results as
JSON lines on a pipe: elasticcluster shows progress from them and, at the end,
the failed task and its message for each failed host. Ansible's own output
goes to the terminal with ``-v``, else to the cluster's ``ansible.log``
(``STORAGE/NAME/ansible.log``).

What a setup needs to know (playbook, Ansible groups and variables per kind,
the setup section's settings) is a ``SetupSpec``: made from a configuration
template, or from the seed's ``AnsibleSetupProvider(groups, ...)`` arguments.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from elasticcluster.cluster import Cluster
from elasticcluster.exceptions import ConfigurationError, SetupFailed
from elasticcluster.inventory import SetupSpec, inventory_for, write_inventory
from elasticcluster.resources import default_playbook

log = logging.getLogger("elasticcluster")

PLUGINS = Path(__file__).resolve().parent / "ansible_plugins"

__all__ = ["AnsibleSetupProvider", "Listener", "PlaybookRun", "SetupFailed", "SetupSpec", "run_playbook",
           "setup_fingerprint"]


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
    #: host -> what its tasks wrote, started or made (``converged.Manages``)
    manages: dict = field(default_factory=dict)


class Listener:
    """What the runner tells about progress (the CLI renders it)."""

    def play(self, name: str) -> None: ...
    def task(self, name: str) -> None: ...
    def result(self, event: dict) -> None: ...
    def close(self) -> None: ...


def ansible_environment(cluster: Cluster, spec: SetupSpec, *, verbosity: int) -> dict[str, str]:
    """ANSIBLE_* settings: elasticcluster's defaults, then the setup section's ``ansible_*`` keys."""
    forks = max(5, min(len(cluster.get_all_nodes()), 64))
    env = {
        "ANSIBLE_PIPELINING": "True" if spec.settings.get("ssh_pipelining", True) else "False",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cluster.files.facts),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_path_dir(),
        "ANSIBLE_CALLBACK_PLUGINS": str(PLUGINS / "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "elasticcluster_events",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_NOCOLOR": "False" if verbosity and sys.stdout.isatty() else "True",
        "ANSIBLE_FORCE_COLOR": "True" if verbosity and sys.stdout.isatty() else "False",
    }
    for key, value in spec.settings.items():
        if key.startswith("ansible_"):
            env[key.upper()] = _text(value)
    if env.get("ANSIBLE_STRATEGY", "").startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_path()
    return env


#: the longest path of a Unix socket (sun_path holds 108 bytes with its final NUL)
_SOCKET_PATH_MAX = 107
#: what ssh adds to the folder of its control sockets: "/" + Ansible's 10-character hash, and
#: the "." + 16 random characters of the socket it makes before renaming it
_CONTROL_NAME = 1 + 10 + 17


def control_path_dir() -> str:
    """The folder of SSH's shared connections (ControlPersist) for Ansible: its default,
    ``~/.ansible/cp``, unless a socket's path there would not fit a Unix socket (a long HOME:
    ssh then fails every connection with "too long for Unix domain socket"); then a folder of
    this user's alone in ``$XDG_RUNTIME_DIR`` or the temporary folder (mode 0700)."""
    default = Path.home() / ".ansible" / "cp"
    if len(os.fsencode(default)) + _CONTROL_NAME <= _SOCKET_PATH_MAX:
        return str(default)
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"):
        if not base:
            continue
        folder = Path(base) / f"elasticcluster-ssh-{os.getuid()}"
        if len(os.fsencode(folder)) + _CONTROL_NAME > _SOCKET_PATH_MAX:
            continue
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            found = folder.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077:
            return str(folder)
        log.debug("not using %s for SSH's control sockets: not a private folder of this user", folder)
    return str(default)  # nothing better: ssh will say why it cannot connect


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


#: a playbook folder with more files than this (a playbook kept in a home folder...) is not
#: digested: every change of nodes then gets the whole setup
FINGERPRINT_MAX_FILES = 5000


def setup_fingerprint(spec: SetupSpec) -> str | None:
    """A digest of what decides a node's whole setup apart from the list of nodes: every file
    of the playbook's folder (roles, group_vars...), the groups and variables of each kind, the
    setup section's settings and how to become root. Nodes set up under one digest need only
    learn of new nodes while it holds; when it changed, every node needs the whole setup.
    None: not known (a folder of more than FINGERPRINT_MAX_FILES files)."""
    import hashlib

    digest = hashlib.sha256()
    playbook = Path(spec.playbook or default_playbook()).expanduser()
    digest.update(json.dumps({"playbook": str(playbook), "groups": spec.groups, "kind_vars": spec.kind_vars,
                              "global_vars": spec.global_vars, "settings": spec.settings,
                              "become": [spec.become, spec.become_user]},
                             sort_keys=True, default=str).encode())
    if playbook.parent.is_dir():
        files = []
        for path in playbook.parent.rglob("*"):
            if len(files) > FINGERPRINT_MAX_FILES:
                return None
            if "__pycache__" not in path.parts and path.is_file():
                files.append(path)
        for path in sorted(files):
                digest.update(str(path.relative_to(playbook.parent)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def ansible_playbook() -> str:
    """The ansible-playbook of this Python environment (or the one on PATH)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if not found:
        raise SetupFailed("ansible-playbook is not installed: pip install ansible-core")
    return found


def run_playbook(cluster: Cluster, spec: SetupSpec, *, extra_args: list[str] = (), verbosity: int = 0,
                 listener: Listener | None = None) -> PlaybookRun:
    """Run the setup's playbook (default: the bundled site.yml) on ``cluster``."""
    listener = listener or Listener()
    playbook = Path(spec.playbook or default_playbook()).expanduser()
    if not playbook.exists():
        where = f"[setup/{spec.name}] playbook_path" if spec.name else "playbook_path"
        raise ConfigurationError(f"{where}: {playbook} does not exist")
    files = cluster.files.ensure()
    inventory = write_inventory(cluster, spec)
    files.facts.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ)
    env.update(ansible_environment(cluster, spec, verbosity=verbosity))
    command = [ansible_playbook(), "-i", str(inventory), str(playbook), *extra_args]
    if verbosity >= 2:
        command.append("-" + "v" * (verbosity - 1))
    log_path = files.ansible_log if verbosity < 1 else None
    read_fd, write_fd = os.pipe()
    env["ELASTICCLUSTER_EVENTS_FD"] = str(write_fd)
    run = PlaybookRun(returncode=-1, log_path=log_path)
    output = None if log_path is None else os.fdopen(
        os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
    try:
        log.debug("running %s", " ".join(command))
        proc = subprocess.Popen(command, env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT if output else None, umask=0o077)
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
        _tighten(files.facts)
    return run


def _tighten(folder: Path) -> None:
    """Make Ansible's fact cache the user's alone, as every stored file.

    Its jsonfile plugin chmods each file it writes to 0644, whatever the umask; the
    folder is 0700 all along, so nobody else could read them meanwhile.
    """
    try:
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                entry.chmod(0o600)
    except OSError as err:
        log.warning("could not make the fact cache in %s private: %s", folder, err)


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
            elif kind == "manages":
                from elasticcluster.converged import Manages

                kinds = {"file": "files", "path": "paths", "service": "services", "user": "users"}
                kind = kinds.get(event.get("what"))
                if kind and event.get("host") and event.get("name"):
                    getattr(run.manages.setdefault(event["host"], Manages()), kind).add(event["name"])
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
    """The seed's setup provider (4.5.10): configures a cluster with a playbook.

    ``groups`` maps each node kind to its Ansible groups (``{"frontend": ["slurm_master"]}``);
    ``environment_vars`` each kind to its variables; ``playbook_path`` defaults to the bundled
    ``site.yml``; ``sudo``/``sudo_user`` say how to become root; ``extra_conf`` holds the
    setup section's other settings (``ansible_*``, ``global_var_*``...). ``storage_path`` and
    ``ansible_module_dir`` of the seed are accepted and unused: a cluster's files live in its
    repository's folder, and playbooks use only ``ansible.builtin`` modules.
    """

    def __init__(self, groups: dict[str, list[str]], playbook_path: str | None = None,
                 environment_vars: dict[str, dict] | None = None, storage_path: str | None = None,
                 sudo: bool = True, sudo_user: str = "root", ansible_module_dir: str | None = None,
                 **extra_conf):
        prefix = "global_var_"
        global_vars = {k[len(prefix):]: v for k, v in extra_conf.items() if k.startswith(prefix)}
        settings = {k: v for k, v in extra_conf.items() if not k.startswith(prefix)}
        self.spec = SetupSpec(name=extra_conf.get("name"), playbook=playbook_path,
                              groups={kind: list(names) for kind, names in groups.items()},
                              kind_vars={kind: dict(v) for kind, v in (environment_vars or {}).items()},
                              global_vars=global_vars, settings=settings,
                              become=sudo, become_user=sudo_user)
        #: the template this provider was made from (Configurator), if any
        self.template = None

    @classmethod
    def from_template(cls, template) -> AnsibleSetupProvider:
        """The setup provider of a configuration template (its setup section and node kinds)."""
        provider = cls.__new__(cls)
        provider.spec = SetupSpec.from_template(template)
        provider.template = template
        return provider

    @property
    def groups(self) -> dict[str, list[str]]:
        return self.spec.groups

    def run_setup(self, cluster: Cluster, extra_args: list[str] = (), verbosity: int = 0,
                  listener: Listener | None = None) -> PlaybookRun:
        """Run the playbook (idempotent) and report what happened, host by host."""
        return run_playbook(cluster, self.spec, extra_args=list(extra_args), verbosity=verbosity,
                            listener=listener)

    failure_report = staticmethod(failure_report)

    def fingerprint(self) -> str:
        """What decides a node's whole setup apart from the list of nodes (``setup_fingerprint``)."""
        return setup_fingerprint(self.spec)

    def state_key(self, cluster: Cluster, fingerprint: str | None) -> str | None:
        """The key under which a whole setup's digests of the nodes hold: ``fingerprint`` (this
        provider's) and the cluster's inventory (``converged.state_key``)."""
        from elasticcluster.converged import state_key

        return state_key(fingerprint, inventory_for(cluster, self.spec))

    def setup_cluster(self, cluster: Cluster, extra_args: list[str] = ()) -> bool:
        """Run the playbook (idempotent); True when every host succeeded (seed 4.5.9)."""
        run = self.run_setup(cluster, extra_args)
        if run.returncode != 0:
            log.error("setup of cluster '%s' failed:\n%s", cluster.name, failure_report(run))
        return run.returncode == 0

    def cleanup(self, cluster: Cluster) -> None:
        """Forget the cluster's inventory (the repository removes the rest with the cluster)."""
        cluster.files.inventory.unlink(missing_ok=True)
