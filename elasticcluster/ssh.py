"""SSH to the nodes: Fabric connections, the per-cluster known_hosts, the wait for SSH.

Host keys are trusted on first use: the key a node shows the first time is
recorded in its state (``node.extra["ssh_host_key"]``) and written, with the
node's addresses, to the cluster's ``known_hosts`` (``STORAGE/NAME/known_hosts``,
mode 0600). Every later
connection (Fabric, the ``ssh``/``sftp`` commands, Ansible) checks against
that file, and a changed key is refused.

Nodes with only private addresses are reached through the frontend as a jump
host; ``ssh_proxy_command`` in the login section replaces that.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from elasticcluster.cluster import Cluster, Node
from elasticcluster.exceptions import ElasticClusterError

log = logging.getLogger("elasticcluster")
# paramiko logs every failed attempt with a traceback; we report attempts ourselves
logging.getLogger("paramiko").addHandler(logging.NullHandler())

READY = "ready"
PORT_CLOSED = "port closed"
NO_BANNER = "no banner yet"
AUTH_REFUSED = "auth refused"
UNREACHABLE = "unreachable"
KEY_CHANGED = "host key changed"
NO_ADDRESS = "no address"
WAITING_GATEWAY = "waiting for the frontend (jump host)"


class HostKeyChanged(ElasticClusterError):
    """A node showed a host key other than the one recorded at first contact."""


@dataclass
class Login:
    """How to log into the nodes of a cluster."""

    user: str
    private_key: str
    port: int = 22
    become: bool = True
    become_user: str = "root"
    proxy_command: str | None = None

    @classmethod
    def of(cls, cluster: Cluster, node: Node | None = None) -> Login:
        info = dict(cluster.extra.get("login_info") or {})
        user = node.image_user if node is not None else info.get("image_user")
        return cls(user=user or info.get("image_user") or "root",
                   private_key=str(cluster.user_key_private), port=int(info.get("ssh_port", 22)),
                   become=bool(info.get("image_sudo", True)),
                   become_user=info.get("image_user_sudo") or "root",
                   proxy_command=info.get("ssh_proxy_command") or None)


# -- known hosts -------------------------------------------------------------------


def known_hosts_path(cluster: Cluster) -> Path:
    return cluster.files.known_hosts


def host_names(node: Node, port: int = 22) -> list[str]:
    names = [*node.ips, node.name]
    return names if port == 22 else [f"[{n}]:{port}" for n in names]


def write_known_hosts(cluster: Cluster) -> Path:
    """(Re)write the cluster's known_hosts from the keys recorded in its nodes."""
    path = known_hosts_path(cluster)
    port = Login.of(cluster).port
    lines = []
    for node in cluster.get_all_nodes():
        key = node.extra.get("ssh_host_key")
        if key and node.ips:
            lines.append(f"{','.join(host_names(node, port))} {key}")
    cluster.files.ensure()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".known_hosts.", suffix=".tmp")
    with os.fdopen(fd, "w") as stream:
        stream.write("".join(line + "\n" for line in lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_known_hosts(cluster: Cluster) -> None:
    try:
        known_hosts_path(cluster).unlink()
    except FileNotFoundError:
        pass


class _TrustOnFirstUse:
    """paramiko host key policy: record the first key of a node; refuse another one."""

    def __init__(self, node: Node, lock: threading.Lock):
        self.node = node
        self.lock = lock

    def missing_host_key(self, client, hostname, key):
        seen = f"{key.get_name()} {key.get_base64()}"
        with self.lock:
            recorded = self.node.extra.get("ssh_host_key")
            if recorded is None:
                self.node.extra["ssh_host_key"] = seen
                log.debug("%s: trusting host key %s on first use", self.node.name, key.get_name())
                return
        if recorded.split()[:2] != seen.split()[:2]:
            raise HostKeyChanged(_changed_message(self.node, hostname))


def _changed_message(node: Node, address: str) -> str:
    return (f"{node.name} ({address}): the SSH host key changed since elasticcluster first connected; "
            "refusing to connect (the node may have been replaced, or someone is in the middle). "
            "If the node was rebuilt on purpose, remove it with `remove-node` and add a new one")


# -- connections ---------------------------------------------------------------------


def address_of(node: Node) -> str | None:
    return node.connection_ip()


def needs_gateway(node: Node, frontend: Node | None) -> bool:
    """A node with only private addresses is reached through a frontend that has a public one."""
    return (frontend is not None and node.name != frontend.name and not node.public_ips
            and bool(frontend.public_ips))


def connection(cluster: Cluster, node: Node, *, timeout: float, lock: threading.Lock | None = None,
               gateway=None):
    """A Fabric Connection to ``node`` that checks host keys against the cluster's known_hosts."""
    from fabric import Config, Connection

    login = Login.of(cluster, node)
    kwargs = {"key_filename": [login.private_key], "look_for_keys": False, "allow_agent": False,
              "banner_timeout": timeout, "auth_timeout": timeout}
    if login.proxy_command:
        import paramiko

        kwargs["sock"] = paramiko.ProxyCommand(_expand_proxy(login.proxy_command, address_of(node),
                                                             login.port))
    conn = Connection(address_of(node), user=login.user, port=login.port, gateway=gateway,
                      connect_timeout=max(1, int(timeout)), connect_kwargs=kwargs,
                      config=Config(overrides={"load_ssh_configs": False}))
    path = known_hosts_path(cluster)
    if path.exists():
        conn.client.load_host_keys(str(path))
    conn.client.set_missing_host_key_policy(_TrustOnFirstUse(node, lock or threading.Lock()))
    return conn


def _expand_proxy(command: str, host: str, port: int) -> str:
    return command.replace("%h", host).replace("%p", str(port)).replace("%%", "%")


def classify(error: BaseException) -> tuple[str, str]:
    """(status, detail) of a failed SSH attempt."""
    import paramiko
    from paramiko.ssh_exception import NoValidConnectionsError

    detail = str(error).strip() or type(error).__name__
    if isinstance(error, HostKeyChanged):
        return KEY_CHANGED, detail
    if isinstance(error, paramiko.BadHostKeyException):
        return KEY_CHANGED, "the host key is not the one recorded"
    if isinstance(error, NoValidConnectionsError):
        return PORT_CLOSED, "connection refused"
    if isinstance(error, paramiko.AuthenticationException):
        return AUTH_REFUSED, detail
    if isinstance(error, (socket.timeout, TimeoutError)):
        return UNREACHABLE, "timed out"
    if isinstance(error, OSError):
        return UNREACHABLE, detail
    if isinstance(error, (paramiko.SSHException, EOFError)):
        return NO_BANNER, detail
    return UNREACHABLE, detail


# -- waiting for SSH ----------------------------------------------------------------------


@dataclass
class Probe:
    status: str
    detail: str = ""
    since: float = 0.0


def wait_for_ssh(cluster: Cluster, nodes: list[Node], *, probe_timeout: float, timeout: float,
                 max_workers: int = 32, interval: float = 0.25,
                 event=lambda message: None) -> dict[str, Probe]:
    """Wait until every node in ``nodes`` accepts an SSH login; returns each node's last probe.

    A node whose host key changed is given up at once; the others are tried
    every ``interval`` seconds until ``timeout``.
    """
    lock = threading.Lock()
    results: dict[str, Probe] = {n.name: Probe(NO_ADDRESS) for n in nodes}
    recent: dict[str, list[Probe]] = {}
    deadline = time.monotonic() + timeout
    try:
        frontend = cluster.get_frontend_node()
    except ElasticClusterError:
        frontend = None
    frontend_ready = threading.Event()
    if frontend is None or frontend.name not in results:
        frontend_ready.set()
    stop = threading.Event()

    def watch(node: Node) -> None:
        while not stop.is_set():
            gateway = None
            if needs_gateway(node, frontend) and not Login.of(cluster).proxy_command:
                if not frontend_ready.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                    results[node.name] = Probe(WAITING_GATEWAY)
                    if time.monotonic() >= deadline:
                        return
                    continue
                gateway = connection(cluster, frontend, timeout=probe_timeout, lock=lock)
            probe = _probe(cluster, node, probe_timeout, lock, gateway)
            recent[node.name] = (recent.get(node.name, []) + [probe])[-5:]
            results[node.name] = _most_advanced(recent[node.name])
            if probe.status == READY:
                if frontend is not None and node.name == frontend.name:
                    frontend_ready.set()
                event(f"{node.name} accepts SSH")
                return
            pause = interval * 4 if probe.status == AUTH_REFUSED else interval
            if probe.status == KEY_CHANGED or time.monotonic() + pause >= deadline:
                return
            time.sleep(pause)

    workers = max(1, min(len(nodes), max_workers))
    ordered = sorted(nodes, key=lambda n: frontend is None or n.name != frontend.name)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssh-wait") as pool:
        futures = [pool.submit(watch, node) for node in ordered]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            stop.set()
            raise
    write_known_hosts(cluster)
    return results


#: how far an attempt got: a refused login says more than a dropped banner seen just after it
_STAGES = [NO_ADDRESS, WAITING_GATEWAY, UNREACHABLE, PORT_CLOSED, NO_BANNER, AUTH_REFUSED, KEY_CHANGED, READY]


def _most_advanced(probes: list[Probe]) -> Probe:
    """What a node last showed: the furthest stage among its last few attempts."""
    return max(reversed(probes), key=lambda p: _STAGES.index(p.status))


def _probe(cluster: Cluster, node: Node, timeout: float, lock, gateway) -> Probe:
    if not address_of(node):
        return Probe(NO_ADDRESS, "the cloud gave it no IP address")
    conn = connection(cluster, node, timeout=timeout, lock=lock, gateway=gateway)
    try:
        conn.open()
        return Probe(READY)
    except Exception as err:  # every failure is a status to report, not a crash
        status, detail = classify(err)
        return Probe(status, detail)
    finally:
        conn.close()
        if gateway is not None:
            gateway.close()


def describe_failures(results: dict[str, Probe], cluster: Cluster) -> list[str]:
    lines = []
    for name, probe in sorted(results.items()):
        if probe.status != READY:
            node = cluster.get_node_by_name(name)
            lines.append(f"{name} ({address_of(node) or 'no address'}): {probe.status}"
                         + (f" ({probe.detail})" if probe.detail and probe.detail != probe.status else ""))
    return lines


# -- the ssh and sftp commands -------------------------------------------------------------


def ssh_options(cluster: Cluster, node: Node, port_flag: str = "-p") -> list[str]:
    """OpenSSH options that reach ``node`` with the cluster's key, known_hosts and jump host."""
    login = Login.of(cluster, node)
    options = _common_options(cluster, login, port_flag)
    proxy = proxy_command(cluster, node)
    if proxy:
        options += ["-o", f"ProxyCommand={proxy}"]
    return options


def _common_options(cluster: Cluster, login: Login, port_flag: str = "-p") -> list[str]:
    return ["-i", login.private_key, "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts_path(cluster)}", "-o", "StrictHostKeyChecking=yes",
            "-o", "CheckHostIP=no", "-o", "BatchMode=yes", port_flag, str(login.port)]


def proxy_command(cluster: Cluster, node: Node) -> str | None:
    """The ProxyCommand for ``node``: the login's ssh_proxy_command, or a jump through the frontend."""
    login = Login.of(cluster, node)
    if login.proxy_command:
        return login.proxy_command
    try:
        frontend = cluster.get_frontend_node()
    except ElasticClusterError:
        return None
    if not needs_gateway(node, frontend):
        return None
    jump = Login.of(cluster, frontend)
    return shlex.join(["ssh", *_common_options(cluster, jump), "-W", "%h:%p",
                       f"{jump.user}@{address_of(frontend)}"])


def ssh_command(cluster: Cluster, node: Node, args: list[str], program: str = "ssh") -> list[str]:
    """The argv of ``ssh``/``sftp`` to ``node``; ARGS follow (ssh) or precede (sftp) the host."""
    login = Login.of(cluster, node)
    target = f"{login.user}@{address_of(node)}"
    if program == "sftp":
        return ["sftp", *ssh_options(cluster, node, port_flag="-P"), *args, target]
    return ["ssh", *ssh_options(cluster, node), target, *args]
