"""Is a cluster still as its last whole setup left it? (the quick path of ``setup``)

While the playbook runs, our Ansible callback tells which files, folders and links
each node's tasks wrote (template, copy, lineinfile, blockinfile, replace) or made (file),
which services they started and which users they made. After a whole setup succeeded
(every node, every task), one SSH command per node digests those things as they are on
the node: each written file's content, mode and owner, each made path's type, mode and
owner, each service's state, each user's id, the host name, each
mount point of ``/etc/fstab`` mounted or not, and the list of installed packages with
their versions. The digests are stored in the cluster's state, with a key made of the
setup's fingerprint (playbook files, groups, variables, settings) and the inventory.

A later ``setup`` of the cluster under the same key asks each node again, in parallel;
when every node gives back the digest of its last whole setup, nothing the playbook
manages has changed, and the playbook does not run. Any difference (a file edited, a
service stopped, a package removed, a node or setting changed, a node that does not
answer) runs the whole playbook, as ``setup --full`` always does. Only digests leave the
nodes: no file's content is read by, shown to or stored on the controller.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from elasticcluster.cluster import Cluster, Node

log = logging.getLogger("elasticcluster")

#: Ansible modules (short names) that write the content of the file named by ``dest``/``path``
FILE_ACTIONS = frozenset({"template", "copy", "lineinfile", "blockinfile", "replace"})
#: ... and that make a file, folder or link without managing its content (a log file touched)
PATH_ACTIONS = frozenset({"file"})
SERVICE_ACTIONS = frozenset({"service", "systemd", "systemd_service"})
USER_ACTIONS = frozenset({"user"})
#: seconds a node has to answer before the check counts it as changed
CHECK_TIMEOUT = 30
#: nodes asked at once
MAX_PARALLEL = 32

# Writes one line per managed thing, then the mounts of /etc/fstab and the packages; the
# node sends back only the digest of it all. Paths arrive as arguments ("$@"), one kind
# after the other, separated by "--".
_SCRIPT = r"""
set -u
digest_all() {
  kind=f
  for p in "$@"; do
    if [ "$p" = "--" ]; then
      case $kind in f) kind=p ;; p) kind=s ;; s) kind=u ;; esac
      continue
    fi
    case $kind in
      f) if [ -L "$p" ]; then echo "l $p $(readlink "$p")"
         elif [ -d "$p" ]; then echo "d $p $(stat -c %a:%U:%G "$p")"
         elif [ -f "$p" ]; then echo "f $p $(stat -c %a:%U:%G "$p") $(sha256sum < "$p")"
         else echo "- $p"; fi ;;
      p) if [ -L "$p" ]; then t=l; elif [ -d "$p" ]; then t=d; elif [ -e "$p" ]; then t=f; else t=-; fi
         echo "p $p $t $(stat -c %a:%U:%G "$p")" ;;
      s) echo "s $p $(systemctl is-active "$p" 2>/dev/null)" ;;
      u) echo "u $p $(id -u "$p" 2>/dev/null)" ;;
    esac
  done
  echo "h $(hostname)"
  if [ -r /etc/fstab ]; then
    awk '$1 !~ /^#/ && $2 ~ /^\// && $4 !~ /noauto/ {print $2}' /etc/fstab | while read -r m; do
      if mountpoint -q "$m" 2>/dev/null; then echo "m $m"; else echo "n $m"; fi
    done
  fi
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n'
  elif command -v rpm >/dev/null 2>&1; then
    rpm -qa | sort
  fi
}
digest_all "$@" 2>/dev/null | sha256sum | cut -c1-64
"""


@dataclass
class Manages:
    """What the setup's tasks wrote or started on one node."""

    files: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"files": sorted(self.files), "paths": sorted(self.paths - self.files),
                "services": sorted(self.services), "users": sorted(self.users)}

    @classmethod
    def from_dict(cls, data: dict) -> Manages:
        return cls(*(set(data.get(kind, ())) for kind in ("files", "paths", "services", "users")))

    def arguments(self) -> list[str]:
        return [*sorted(self.files), "--", *sorted(self.paths - self.files), "--",
                *sorted(self.services), "--", *sorted(self.users)]


def what_a_result_manages(action: str, data: dict, args: dict) -> tuple[str, str] | None:
    """("file"|"path"|"service"|"user", name) for one successful task result, or None.

    ``action`` is the module's name (``ansible.builtin.copy`` or ``copy``), ``data`` its
    result, ``args`` the task's arguments (templated, except in loops, where the result of
    each item holds the path)."""
    short = action.rsplit(".", 1)[-1]
    if short in FILE_ACTIONS or short in PATH_ACTIONS:
        if (data.get("state") or args.get("state")) == "absent":
            return None
        path = data.get("dest") or data.get("path") or args.get("dest") or args.get("path")
        if isinstance(path, str) and path.startswith("/") and "{{" not in path:
            return ("file" if short in FILE_ACTIONS else "path", path)
    elif short in SERVICE_ACTIONS:
        name, state = args.get("name"), args.get("state")
        if isinstance(name, str) and "{{" not in name and state in ("started", "restarted", "reloaded"):
            return ("service", name)
    elif short in USER_ACTIONS:
        name = data.get("name") or args.get("name")
        if isinstance(name, str) and "{{" not in name and args.get("state", "present") == "present":
            return ("user", name)
    return None


def state_key(fingerprint: str | None, inventory: dict) -> str | None:
    """The key digests are stored under: the setup's fingerprint and the whole inventory
    (nodes, addresses, groups, variables). None: the setup cannot be fingerprinted."""
    if fingerprint is None:
        return None
    text = json.dumps(inventory, sort_keys=True, default=str)
    return hashlib.sha256(f"{fingerprint}\0{text}".encode()).hexdigest()


def _command(cluster: Cluster, node: Node, manages: Manages) -> list[str]:
    from elasticcluster import ssh

    login = ssh.Login.of(cluster, node)
    remote = shlex.join(["sh", "-s", "--", *manages.arguments()])
    if login.user != "root" and login.become:
        remote = shlex.join(["sudo", "-n", "-u", login.become_user, "sh", "-c", remote])
    return ["ssh", *ssh.ssh_options(cluster, node), "-o", f"ConnectTimeout={CHECK_TIMEOUT}",
            f"{login.user}@{ssh.address_of(node)}", remote]


def digest(cluster: Cluster, node: Node, manages: Manages) -> str | None:
    """The digest of what ``manages`` names on ``node`` as it is now; None if it did not answer."""
    try:
        done = subprocess.run(_command(cluster, node, manages), input=_SCRIPT, capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT + 10)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.debug("%s: no answer to the setup check: %s", node.name, err)
        return None
    answer = done.stdout.strip()
    if done.returncode != 0 or len(answer) != 64:
        log.debug("%s: the setup check failed (exit %s): %s", node.name, done.returncode,
                  done.stderr.strip()[-300:])
        return None
    return answer


def _digests(cluster: Cluster, plan: dict[str, Manages]) -> dict[str, str | None]:
    nodes = {n.name: n for n in cluster.get_all_nodes()}
    names = [name for name in plan if name in nodes]
    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(names), MAX_PARALLEL)) as pool:
        answers = pool.map(lambda name: digest(cluster, nodes[name], plan[name]), names)
        return dict(zip(names, answers, strict=True))


def record(cluster: Cluster, key: str | None, managed: dict[str, Manages]) -> int:
    """After a whole setup: store each node's digest under ``key``; the number of nodes
    recorded. A node that does not answer gets no record (its next setup runs the playbook)."""
    forget(cluster)
    if key is None:
        return 0
    plan = {n.name: managed.get(n.name, Manages()) for n in cluster.get_all_nodes()}
    recorded = 0
    for name, answer in _digests(cluster, plan).items():
        if answer is not None:
            cluster.get_node_by_name(name).extra["converged"] = {**plan[name].as_dict(), "digest": answer}
            recorded += 1
    cluster.extra["converged_key"] = key
    return recorded


def forget(cluster: Cluster) -> None:
    cluster.extra.pop("converged_key", None)
    for node in cluster.get_all_nodes():
        node.extra.pop("converged", None)


@dataclass
class Check:
    """The answer of ``check``: ``unchanged`` is True when every node is as recorded."""

    unchanged: bool
    reason: str = ""
    changed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def check(cluster: Cluster, key: str | None) -> Check:
    """Whether every node of ``cluster`` is as the last whole setup under ``key`` left it."""
    nodes = cluster.get_all_nodes()
    if not nodes:
        return Check(False, "the cluster has no nodes")
    if key is None or cluster.extra.get("converged_key") != key:
        return Check(False, "the playbooks, the setup's settings or the nodes changed since the last "
                            "whole setup (or none is recorded)")
    missing = [n.name for n in nodes if not (n.extra.get("converged") or {}).get("digest")]
    if missing:
        return Check(False, f"no record of the last whole setup of {_names(missing)}")
    plan = {n.name: Manages.from_dict(n.extra["converged"]) for n in nodes}
    answers = _digests(cluster, plan)
    changed = sorted(name for name in plan
                     if answers.get(name) is None or answers[name] != cluster.get_node_by_name(
                         name).extra["converged"]["digest"])
    counts = {"nodes": len(plan), "files": sum(len(m.files | m.paths) for m in plan.values()),
              "services": sum(len(m.services) for m in plan.values()),
              "users": sum(len(m.users) for m in plan.values())}
    if changed:
        return Check(False, f"{_names(changed)} changed since the last whole setup (or did not answer)",
                     changed, counts)
    return Check(True, counts=counts)


def _names(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
