"""Elastic SLURM: the cloud follows SLURM's power saving (``elasticcluster autoscale``).

SLURM decides which nodes a cluster needs, and when. Its slurm.conf declares
every node an autoscaled kind may have (``KIND_nodes_max``) as a power-saving
cloud node; when jobs need more nodes than run, SLURM marks some
POWERING_UP, and when a node has been idle for ``autoscale_idle`` seconds it
powers it down. The autoscaler runs where the cloud credentials are (they
never go to the nodes), reads those states on the frontend (``scontrol``,
over the cluster's SSH connection) and reconciles, one round at a time:

- a node SLURM powers up gets an instance named as SLURM names it, through
  ``operations.scale`` (the steps of ``resize``, state written ahead), is
  set up (it and the frontend only), and its slurmd registers with slurmctld;
- a node SLURM powers down is terminated and forgotten; a node with a job
  never is (SLURM powers down idle nodes only);
- a node that cannot be made or set up is terminated and marked DOWN in
  SLURM, which requeues its jobs; SLURM itself gives up on a node that does
  not register within ``ResumeTimeout``, and it is then terminated too.

Killed at any instant, the next run goes on where it stopped: SLURM still
wants the node, the state file records what was made. Two autoscalers never
act on one cluster at once (a lock of their own beside the cluster's).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from elasticcluster import operations
from elasticcluster.cluster import Cluster
from elasticcluster.exceptions import ClusterLocked, ElasticClusterError, SetupFailed, UsageError

log = logging.getLogger("elasticcluster")

#: how often the autoscaler looks at SLURM (seconds)
INTERVAL = 5.0
_FIELD = re.compile(r"(?:^|\s)(NodeName|State)=(\S+)")


@dataclass
class Round:
    """What one look at SLURM found, and what the autoscaler did about it."""

    wanted: list[str] = field(default_factory=list)  # SLURM powers them up, no instance yet
    starting: list[str] = field(default_factory=list)  # instances being made or set up
    up: list[str] = field(default_factory=list)  # autoscaled nodes that run
    going: list[str] = field(default_factory=list)  # SLURM powered them down
    failed: list[str] = field(default_factory=list)  # could not be made or set up


def check_autoscaled(cluster: Cluster) -> dict[str, list[str]]:
    """kind -> the node names autoscale may add; UsageError (exit 2) where it cannot."""
    spec = cluster.template_spec
    if spec is None:
        raise UsageError(f"cluster '{cluster.name}': its template is not in the configuration any more; "
                         "autoscale needs it")
    groups = {group for kind in spec.kinds.values() for group in kind.groups}
    if "slurm_master" not in groups:
        raise UsageError(f"autoscale: cluster '{cluster.name}' does not run SLURM; autoscale follows "
                         "SLURM's power saving only (Grid Engine and the others are not supported)")
    elastic = {kind: spec.kinds[kind].elastic_names for kind in spec.kinds if spec.kinds[kind].elastic_names}
    if not elastic:
        raise UsageError(f"autoscale: no node kind of cluster '{cluster.name}' is autoscaled; give one a "
                         f"ceiling, e.g. compute_nodes_max = 8 in [cluster/{spec.name}]")
    return elastic


def node_states(text: str) -> dict[str, set[str]]:
    """``scontrol show nodes -o`` -> node name -> its state flags (IDLE, CLOUD, POWERING_UP...)."""
    states = {}
    for line in text.splitlines():
        fields = dict(_FIELD.findall(line))
        if "NodeName" in fields and "State" in fields:
            states[fields["NodeName"]] = set(fields["State"].upper().split("+"))
    return states


def plan(cluster: Cluster, elastic: dict[str, list[str]], states: dict[str, set[str]]) -> Round:
    """What SLURM wants of the autoscaled nodes, against what the cluster has."""
    nodes = {n.name: n for n in cluster.get_all_nodes()}
    found = Round()
    for names in elastic.values():
        for name in names:
            flags = states.get(name, set())
            node = nodes.get(name)
            if flags & {"DOWN", "DRAIN", "FAIL"} and node is None:
                continue  # given up on (by SLURM or by us): SLURM picks other nodes for its jobs
            if flags & {"POWERING_UP", "POWER_UP"}:
                if node is None:
                    found.wanted.append(name)
                elif not node.extra.get("set_up"):
                    found.starting.append(name)
                else:
                    found.up.append(name)  # set up; its slurmd is registering
            elif flags & {"POWERED_DOWN", "POWERING_DOWN", "POWER_DOWN"} and node is not None:
                if not flags & {"ALLOCATED", "MIXED", "COMPLETING"}:
                    found.going.append(name)
            elif node is not None:
                found.up.append(name)
    return found


class Slurm:
    """slurmctld on the cluster's frontend, reached over the cluster's SSH connection."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    def run(self, command: str, timeout: float = 60) -> str:
        from elasticcluster import ssh

        frontend = self.cluster.get_frontend_node()
        login = ssh.Login.of(self.cluster, frontend)
        if login.become and login.user != "root":
            command = f"sudo -n {command}"
        conn = ssh.connection(self.cluster, frontend, timeout=min(timeout, 30))
        try:
            result = conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        except Exception as err:  # a failed look is one round lost, said so; the next one tries again
            raise ElasticClusterError(f"cannot ask slurmctld on {frontend.name}: {err}") from err
        finally:
            conn.close()
        if result.exited != 0:
            raise ElasticClusterError(f"`{command}` on {frontend.name} failed: "
                                      f"{(result.stderr or result.stdout).strip()[:300]}")
        return result.stdout

    def states(self) -> dict[str, set[str]]:
        return node_states(self.run("scontrol show nodes -o"))

    def report(self, node) -> None:
        """Tell slurmctld where a new node is, before its slurmd registers."""
        address = node.private_ips[0] if node.private_ips else node.connection_ip()
        self.run(f"scontrol update nodename={shlex.quote(node.name)} nodeaddr={shlex.quote(address)} "
                 f"nodehostname={shlex.quote(node.name)}")

    def down(self, names: list[str], why: str) -> None:
        """Mark nodes DOWN (SLURM requeues their jobs)."""
        reason = shlex.quote(f"elasticcluster: {why}"[:200])
        self.run(f"scontrol update nodename={shlex.quote(','.join(names))} state=down reason={reason}")


def run(cluster: Cluster, *, once: bool = False, interval: float = INTERVAL,
        events: operations.Events | None = None, status: Callable[[Round], None] | None = None,
        rounds: int | None = None) -> Round:
    """Reconcile the cloud with SLURM, round after round (``once``: one round). ``status`` is
    told each round's findings; ``rounds`` stops after that many (tests). Returns the last round."""
    from elasticcluster import lifecycle

    events = events or operations.Events()
    elastic = check_autoscaled(cluster)
    handler = _log_to(cluster)
    shown = events.progress

    def progress(message: str) -> None:  # on the screen, and in the cluster's autoscale.log
        handler.handle(logging.makeLogRecord({"msg": message, "levelno": logging.INFO,
                                              "levelname": "INFO"}))
        shown(message)

    events = dataclasses.replace(events, progress=progress)
    try:
        lock = cluster.repository.lock(f"{cluster.name}+autoscale", timeout=0)
        with lock, lifecycle.sigterm_as_interrupt():
            try:
                return _loop(cluster, elastic, once, interval, events, status, rounds)
            except KeyboardInterrupt:  # between rounds: a stop, not a fault; nodes stay as they are
                progress(f"autoscale of '{cluster.name}' stopped; its nodes stay as they are")
                return Round()
    except ClusterLocked:
        raise ClusterLocked(f"another `elasticcluster autoscale {cluster.name}` runs for this cluster; "
                            "one is enough") from None
    finally:
        logging.getLogger("elasticcluster").removeHandler(handler)
        handler.close()


def _loop(cluster, elastic, once, interval, events, status, rounds) -> Round:
    slurm = Slurm(cluster)
    done = 0
    while True:
        cluster.load_state(cluster.repository.get(cluster.name))
        found = reconcile(cluster, elastic, slurm, events)
        if status is not None:
            status(found)
        done += 1
        if once or (rounds is not None and done >= rounds):
            return found
        time.sleep(interval)


def reconcile(cluster: Cluster, elastic: dict[str, list[str]], slurm: Slurm, events) -> Round:
    """One round: look at SLURM, then make, set up and terminate nodes as it wants."""
    found = plan(cluster, elastic, slurm.states())
    if found.going:
        events.progress(f"autoscale: SLURM powered down {', '.join(found.going)}: terminating")
        operations.scale(cluster, remove=found.going, events=events)
    todo = found.wanted + found.starting
    if todo:
        # the new ones are made; those an earlier (killed) round made are waited for
        if found.wanted:
            events.progress(f"autoscale: SLURM wants {', '.join(found.wanted)}: making them")
        by_kind = {kind: [n for n in names if n in todo] for kind, names in elastic.items()}
        failed = operations.scale(cluster, add={k: v for k, v in by_kind.items() if v}, events=events)
        _give_up(cluster, slurm, failed, "its instance could not be made or never answered SSH",
                 events, found)
        todo = [n for n in todo if n not in failed]
    if todo:
        for name in todo:
            slurm.report(cluster.get_node_by_name(name))
        frontend = cluster.get_frontend_node().name
        try:
            # the new nodes get the whole setup; the frontend learns of them
            operations.setup(cluster, limit=sorted({*todo, frontend}), new=todo, events=events)
        except SetupFailed as err:
            log.warning("%s", err)
            operations.scale(cluster, remove=todo, events=events)
            _give_up(cluster, slurm, todo, "its setup failed", events, found)
        else:
            found.up += todo
    found.starting = [n for n in found.starting if n not in found.up]
    return found


def _give_up(cluster: Cluster, slurm: Slurm, names: list[str], why: str, events, found: Round) -> None:
    if not names:
        return
    events.progress(f"autoscale: {', '.join(names)}: {why}; terminated, and DOWN in SLURM (it requeues "
                    "their jobs)")
    slurm.down(names, why)
    found.failed += names


def _log_to(cluster: Cluster) -> logging.Handler:
    """The cluster's autoscale.log (mode 0600) gets the autoscaler's progress and every warning
    and error, secrets masked."""
    from elasticcluster.redact import RedactingFilter

    path = cluster.files.ensure().autoscale_log
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.getLogger("elasticcluster").addHandler(handler)
    return handler
