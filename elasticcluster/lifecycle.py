"""The node lifecycle, the same for every cloud: a short list of verbs.

``prepare`` (key pair, security groups, image and flavor), ``run_instances``
(create nodes in parallel, write-ahead state), ``wait_instances`` (running,
with addresses), ``refresh``, ``terminate_instances``, ``stop_instances`` and
``start_instances`` (pause and resume). Each works on a ``Cluster`` and a
``CloudProvider``; the differences between clouds live in the provider's
mapping, never here.

Write-ahead state: every node is saved (state ``creating``, with a client
token) before its create call, and saved again with its instance id as soon
as the call returns, so that an interruption at any instant leaves nothing
``stop`` cannot find; ``stop`` also asks the cloud for the cluster's tags.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from elasticcluster.cloud import BACKOFF, RETRIES, CloudProvider
from elasticcluster.cluster import Cluster, Node
from elasticcluster.exceptions import (
    CloudError,
    Interrupted,
    QuotaExceeded,
    StartupTimeout,
    Terminated,
    TransientCloudError,
)

log = logging.getLogger("elasticcluster")

POLL_INTERVAL = (0.5, 5.0)
GONE = ("terminated", "missing")


@dataclass
class Progress:
    """Callbacks the CLI uses to show progress (all optional)."""

    event: Callable[[str], None] = lambda message: log.info("%s", message)


@dataclass
class Outcome:
    """What a lifecycle verb did, node by node."""

    done: list[Node] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: why the cloud could not list the cluster's instances (terminate: its tags were not swept)
    unlisted: str | None = None
    #: ids of instances that may still run (terminate: those whose call failed)
    remaining: list[str] = field(default_factory=list)


@contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into ``Terminated`` (a KeyboardInterrupt; main thread only), so both stop
    the same way: state saved, a message saying what exists and what to run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM back (main thread) while what the cloud answered is recorded:
    a second Ctrl-C must not lose the ids of instances that exist. They take effect after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, frame: held.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            raise Terminated if held[0] == signal.SIGTERM else KeyboardInterrupt


def what_exists(cluster: Cluster) -> str:
    """``interrupted: N node(s) of cluster X exist and are recorded`` (and calls left unanswered)."""
    nodes = cluster.get_all_nodes()
    created = sum(1 for n in nodes if n.instance_id)
    unanswered = sum(1 for n in nodes if not n.instance_id and n.state == "creating")
    text = f"interrupted: {created} node(s) of cluster '{cluster.name}' exist and are recorded"
    if unanswered:
        text += (f"; {unanswered} more create call(s) had no answer yet (an instance they made carries "
                 "the cluster's tags: the next command finds it)")
    return text


def provision(provider: CloudProvider, cluster: Cluster, nodes: list[Node], *, public_key: str,
              max_workers: int = 10, startup_timeout: float = 600, ssh_probe_timeout: float = 5,
              floating_ip: bool = False, progress: Progress | None = None,
              waiting: list[Node] = (), minimums: dict[str, int] | None = None) -> None:
    """The whole start of ``nodes``: prepare, create, minimums, running, SSH (one path for all
    clouds); nodes already created (``waiting``) are waited for with them. A node that fails
    is dropped while each kind keeps ``minimums`` (default: KIND_min_nodes), else it fails."""
    progress = progress or Progress()
    minimums = dict(cluster.extra.get("min_nodes") or {}) if minimums is None else minimums
    if nodes:
        prepare(provider, cluster, nodes, public_key)
        progress.event(f"creating {len(nodes)} node(s) of cluster '{cluster.name}'")
        outcome = run_instances(provider, cluster, nodes, public_key=public_key, max_workers=max_workers,
                                progress=progress)
        check_min_nodes(cluster, outcome, minimums)
    created = _still_in(cluster, [*waiting, *nodes])
    late = wait_instances(provider, cluster, created, timeout=startup_timeout, floating_ip=floating_ip,
                          progress=progress, sweep=bool(nodes))
    handle_timeout(provider, cluster, late, minimums, startup_timeout)
    wait_ssh(provider, cluster, _still_in(cluster, created), probe_timeout=ssh_probe_timeout,
             timeout=startup_timeout, max_workers=max(32, max_workers), progress=progress,
             minimums=minimums)


def _still_in(cluster: Cluster, nodes: list[Node]) -> list[Node]:
    """The ``nodes`` the cluster still holds, in one pass (not O(N^2) dataclass comparisons)."""
    kept = {id(n) for n in cluster.get_all_nodes()}
    return [n for n in nodes if id(n) in kept]


def wait_ssh(provider: CloudProvider, cluster: Cluster, nodes: list[Node], *, probe_timeout: float,
             timeout: float, max_workers: int = 32, progress: Progress | None = None,
             drop: bool = True, minimums: dict[str, int] | None = None) -> None:
    """Wait until every node accepts SSH; drop the silent ones if ``drop`` and the minimums
    allow, else fail."""
    from elasticcluster import ssh

    if not nodes:
        return
    progress = progress or Progress()
    progress.event(f"waiting for SSH on {len(nodes)} node(s)")
    results = ssh.wait_for_ssh(cluster, nodes, probe_timeout=probe_timeout, timeout=timeout,
                               max_workers=max_workers, event=progress.event)
    cluster.save()
    silent = [cluster.get_node_by_name(n) for n, p in results.items() if p.status != ssh.READY]
    if not silent:
        return
    lines = ssh.describe_failures(results, cluster)
    changed = any(p.status == ssh.KEY_CHANGED for p in results.values())
    if minimums is None:
        minimums = dict(cluster.extra.get("min_nodes") or {})
    if changed or not drop or not within_minimums(cluster, silent, minimums):
        raise CloudError("cannot log into every node over SSH:\n  " + "\n  ".join(lines))
    log.warning("terminating node(s) that never accepted SSH (KIND_min_nodes allows it):\n  %s",
                "\n  ".join(lines))
    drop_nodes(provider, cluster, silent)
    ssh.write_known_hosts(cluster)


def prepare(provider: CloudProvider, cluster: Cluster, nodes: list[Node], public_key: str) -> None:
    """Everything the create calls need, checked before any node is created."""
    provider.ensure_key_pair(cluster.user_key_name, public_key)
    for group in sorted({n.security_group for n in nodes if n.security_group}):
        provider.ensure_security_group(group)
    for node in nodes:
        provider.image(node.image_id)
        provider.size(node.flavor)
        provider.check_node(node)


def ex_args(node: Node) -> dict:
    return {k: v for k, v in node.extra.items() if k.startswith("ex_")}


def run_instances(provider: CloudProvider, cluster: Cluster, nodes: list[Node], *, public_key: str,
                  max_workers: int, progress: Progress | None = None) -> Outcome:
    """Create ``nodes`` in parallel (at most ``max_workers`` calls at once)."""
    progress = progress or Progress()
    for node in nodes:
        node.state = "creating"
        node.extra.setdefault("client_token", f"ec-{uuid.uuid4().hex[:24]}")
    cluster.save()
    outcome = Outcome()
    lost = threading.Lock()  # one look for lost answers at a time
    arguments = {node.name: provider.create_arguments(
        node, public_key=public_key, key_name=cluster.user_key_name,
        client_token=node.extra["client_token"], extra=ex_args(node)) for node in nodes}
    stop = threading.Event()
    executor = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="create")
    futures = {}
    for node in nodes:
        future = executor.submit(_create_with_retries, provider, node, arguments[node.name], stop, lost)
        future.size = arguments[node.name].get("size")
        futures[future] = node
    pending = set(futures)
    try:
        with sigterm_as_interrupt():
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        _record(cluster, futures[future], future, outcome, progress)
                    if done:  # one write per round of answers, not per node (each write holds every node)
                        cluster.save()
            except KeyboardInterrupt as interrupt:
                stop.set()
                _drain(cluster, futures, pending, outcome, progress)
                raise Interrupted(what_exists(cluster), isinstance(interrupt, Terminated)) from None
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    return outcome


def _drain(cluster, futures, pending, outcome, progress) -> None:
    """After Ctrl-C: cancel what has not started, record what the cloud already answered."""
    with signals_deferred():
        for future in pending:
            if future.cancel():
                futures[future].state = "new"
        cluster.save()
    running = [f for f in pending if not f.cancelled()]
    if running:
        progress.event(f"interrupted: waiting for {len(running)} create call(s) already sent "
                       "(Ctrl-C again to leave them to the next command, which finds them by tag)")
    try:
        for future in running:
            wait([future])
            with signals_deferred():
                _record(cluster, futures[future], future, outcome, progress)
                cluster.save()
    except KeyboardInterrupt:
        pass
    with signals_deferred():
        for future in futures:  # answers that came in meanwhile
            node = futures[future]
            if future.done() and not future.cancelled() and not node.instance_id and node.state == "creating":
                _record(cluster, node, future, outcome, progress)
        cluster.save()


def _create_with_retries(provider: CloudProvider, node: Node, kwargs: dict, stop: threading.Event,
                         lost: threading.Lock):
    """One create call, retried on transient errors. A failed call may have made the instance
    all the same (its answer lost): before each retry the cloud is asked for an instance
    tagged with this node, which is taken instead of making a second one (a client token
    alone does not prevent it on every cloud)."""
    delay = BACKOFF
    for attempt in range(RETRIES + 1):
        if stop.is_set():
            raise Interrupted("not created: interrupted")
        try:
            return provider.create(node, kwargs)
        except TransientCloudError as err:
            if attempt == RETRIES:
                raise
            log.info("%s: %s; retrying in %.1fs", node.name, err, delay)
            time.sleep(delay * (1 + random.random() / 2))
            delay *= 2
            with lost:
                made = _made_for(provider, node)
            if made is not None:
                log.info("%s: its instance %s was made all the same", node.name, made.id)
                return made


def _made_for(provider: CloudProvider, node: Node):
    """An instance of the cloud tagged (or named) as ``node``, if any is alive."""
    try:
        instances = provider.list_instances()
    except CloudError:
        return None
    token = node.extra.get("client_token")
    alive = [i for i in instances if provider.node_name_of(i) == node.name
             and str(i.state).lower() not in GONE]
    alive.sort(key=lambda i: token is None or provider.client_token_of(i) != token)
    return alive[0] if alive else None


def _record(cluster: Cluster, node: Node, future, outcome: Outcome, progress: Progress) -> None:
    """Copy one create call's answer onto ``node`` (the caller saves the state right after)."""
    error = future.exception()
    if error is None:
        instance = future.result()
        node.instance_id = instance.id
        update_node(node, instance)
        node.extra["flavor_cpus"], node.extra["flavor_ram"] = size_facts(future.size)
        if node.state in ("new", "creating"):
            node.state = "pending"
        outcome.done.append(node)
        progress.event(f"created {node.name} ({node.instance_id})")
    else:
        node.state = "failed"
        outcome.failed[node.name] = str(error)
        if not isinstance(error, Interrupted):
            progress.event(f"could not create {node.name}: {error}")


def size_facts(size) -> tuple[int | None, int | None]:
    """(CPUs, memory in MiB) of a libcloud NodeSize, where the driver says."""
    extra = getattr(size, "extra", None) or {}
    return extra.get("cpus") or extra.get("vcpus"), getattr(size, "ram", None)


def update_node(node: Node, instance) -> None:
    """Copy state and addresses of a libcloud instance onto ``node``."""
    node.state = str(instance.state).lower() if instance.state is not None else "unknown"
    node.public_ips = [ip for ip in (instance.public_ips or []) if ip]
    node.private_ips = [ip for ip in (instance.private_ips or []) if ip]
    if node.extra.get("floating_ip") and node.extra["floating_ip"] not in node.public_ips:
        node.public_ips.insert(0, node.extra["floating_ip"])
    node.preferred_ip = (node.public_ips or node.private_ips or [None])[0]


def check_min_nodes(cluster: Cluster, outcome: Outcome, minimums: dict[str, int]) -> None:
    """Drop nodes that could not be created if each kind keeps its minimum; else fail."""
    failed = [n for n in cluster.get_all_nodes() if n.name in outcome.failed]
    if not failed:
        return
    short = []
    for kind, nodes in cluster.nodes.items():
        alive = sum(1 for n in nodes if n.name not in outcome.failed)
        if alive < minimums.get(kind, len(nodes)):
            short.append(f"{kind}: {alive} created, at least {minimums.get(kind, len(nodes))} needed")
    reasons = sorted(set(outcome.failed.values()))
    if short:
        quota = any("quota" in r.lower() or "limit" in r.lower() or "capacity" in r.lower() for r in reasons)
        cls = QuotaExceeded if quota else CloudError
        raise cls(f"cluster '{cluster.name}': too few nodes ({'; '.join(short)}): {reasons[0]}")
    for node in failed:
        cluster.remove_node(node)
    log.warning("%d node(s) could not be created (%s); carrying on with the minimum the "
                "configuration allows (KIND_min_nodes)", len(failed), reasons[0])
    cluster.save()


def refresh(provider: CloudProvider, cluster: Cluster) -> list:
    """Update every node from one listing; returns the instances found for the cluster."""
    instances = provider.list_instances(known_ids=[n.instance_id for n in cluster.get_all_nodes()])
    by_id = {i.id: i for i in instances}
    by_name: dict[str, list] = {}
    for instance in instances:
        by_name.setdefault(provider.node_name_of(instance), []).append(instance)
    for node in cluster.get_all_nodes():
        instance = by_id.get(node.instance_id) if node.instance_id else None
        if instance is None and not node.instance_id:
            instance = _adopt(provider, node, by_name.get(node.name, []))
        if instance is not None:
            update_node(node, instance)
        elif node.instance_id:
            node.state = "missing"
    return instances


def _adopt(provider: CloudProvider, node: Node, candidates: list):
    """A node whose create call was sent but not answered: find its instance by token or tag."""
    token = node.extra.get("client_token")
    alive = [i for i in candidates if str(i.state).lower() not in GONE]
    for instance in alive:
        if token and provider.client_token_of(instance) == token:
            break
    else:
        instance = alive[0] if alive else None
    if instance is not None:
        node.instance_id = instance.id
        log.info("%s: found its instance %s on the cloud", node.name, instance.id)
    return instance


def wait_instances(provider: CloudProvider, cluster: Cluster, nodes: list[Node], *, timeout: float,
                   floating_ip: bool = False, progress: Progress | None = None,
                   sweep: bool = False) -> list[Node]:
    """Wait until ``nodes`` run and have an address; returns those that did not in time.
    ``sweep``: right after creating them, terminate the cluster's strays (``terminate_strays``)."""
    progress = progress or Progress()
    deadline = time.monotonic() + timeout
    interval = POLL_INTERVAL[0]
    names = {n.name for n in nodes}
    with sigterm_as_interrupt():
        try:
            while True:
                instances = refresh(provider, cluster)
                if sweep:
                    terminate_strays(provider, cluster, instances)
                    sweep = False
                waiting = [n for n in cluster.get_all_nodes() if n.name in names and not _ready(n)]
                if floating_ip:
                    _attach_floating_ips(provider, cluster, names)
                    waiting = [n for n in waiting if not _ready(n)]
                cluster.save()
                if not waiting:
                    progress.event(f"{len(names)} node(s) running")
                    return []
                if time.monotonic() >= deadline:
                    return waiting
                time.sleep(interval)
                interval = min(interval * 1.5, POLL_INTERVAL[1])
        except KeyboardInterrupt as interrupt:
            with signals_deferred():
                cluster.save()
            raise Interrupted(what_exists(cluster), isinstance(interrupt, Terminated)) from None


def terminate_strays(provider: CloudProvider, cluster: Cluster, instances: list) -> None:
    """Terminate the instances tagged as this cluster's that no node records, once ``refresh``
    gave the nodes without an instance theirs: a create call whose answer was lost and that
    was sent again, on a cloud that does not honour client tokens, made a second one."""
    known = {n.instance_id for n in cluster.get_all_nodes() if n.instance_id}
    for instance in instances:
        if instance.id not in known and str(instance.state).lower() not in GONE:
            log.warning("instance %s (%s) of cluster '%s' is a duplicate no node records: terminating it",
                        instance.id, provider.node_name_of(instance), cluster.name)
            try:
                provider.destroy(instance)
            except CloudError as err:
                log.warning("could not terminate %s (%s); `elasticcluster stop %s` will", instance.id,
                            err, cluster.name)


def _ready(node: Node) -> bool:
    return node.state == "running" and bool(node.preferred_ip)


def _attach_floating_ips(provider: CloudProvider, cluster: Cluster, names: set[str]) -> None:
    for node in cluster.get_all_nodes():
        if node.name in names and node.state == "running" and not node.public_ips \
                and not node.extra.get("floating_ip"):
            instance = _instance(provider, node)
            if instance is not None:
                ip = provider.floating_ip(instance)
                if ip:
                    node.extra["floating_ip"] = ip
                    update_node(node, instance)


def _instance(provider: CloudProvider, node: Node):
    for instance in provider.list_instances(known_ids=[node.instance_id]):
        if instance.id == node.instance_id:
            return instance
    return None


def within_minimums(cluster: Cluster, dropped: list[Node], minimums: dict[str, int]) -> bool:
    """Whether every kind keeps its minimum (KIND_min_nodes) without ``dropped``."""
    names = {n.name for n in dropped}
    for kind, nodes in cluster.nodes.items():
        if sum(1 for n in nodes if n.name not in names) < minimums.get(kind, len(nodes)):
            return False
    return True


def drop_nodes(provider: CloudProvider, cluster: Cluster, nodes: list[Node]) -> None:
    """Terminate ``nodes`` and forget them."""
    terminate_instances(provider, cluster, nodes, force=True, lost=False)
    for node in nodes:
        cluster.remove_node(node)
    cluster.save()


def handle_timeout(provider: CloudProvider, cluster: Cluster, late: list[Node], minimums: dict[str, int],
                   timeout: float) -> None:
    """Nodes not running in time: terminate and drop them if the minimums allow, else fail."""
    if not late:
        return
    names = ", ".join(n.name for n in late)
    if not within_minimums(cluster, late, minimums):
        raise StartupTimeout(f"cluster '{cluster.name}': {names} not running after {timeout:.0f}s "
                             "(startup_timeout)")
    drop_nodes(provider, cluster, late)
    log.warning("%s not running after %.0fs: terminated, carrying on without them (KIND_min_nodes)",
                names, timeout)


def terminate_instances(provider: CloudProvider, cluster: Cluster, nodes: list[Node] | None = None, *,
                        force: bool = False, max_workers: int = 10, lost: bool = True) -> Outcome:
    """Terminate ``nodes`` (default: all), plus, when ``lost``, any instance the cloud tags
    as this cluster's that the state file does not know. When the cloud cannot list them,
    the recorded instances are terminated by id all the same (``Outcome.unlisted`` says why
    the tags were not swept)."""
    outcome = Outcome()
    try:
        instances = refresh(provider, cluster)
    except CloudError as err:
        log.warning("cannot list the instances of cluster '%s' (%s): terminating the recorded ones "
                    "by id", cluster.name, err)
        instances, outcome.unlisted = [], str(err)
    nodes = cluster.get_all_nodes() if nodes is None else nodes
    by_id = {i.id: i for i in instances}
    # a recorded instance the cloud did not list is terminated by id all the same
    targets = [(n.name, by_id.get(n.instance_id) or provider.instance_stub(n.instance_id, n.name))
               for n in nodes if n.instance_id]
    if lost:
        known = {n.instance_id for n in cluster.get_all_nodes() if n.instance_id}
        for instance in instances:
            if instance.id not in known and str(instance.state).lower() not in GONE:
                log.info("instance %s (%s) of cluster '%s' is not in its state file: terminating it",
                         instance.id, provider.node_name_of(instance), cluster.name)
                targets.append((f"instance {instance.id} ({provider.node_name_of(instance)})", instance))
    targets = [(name, i) for name, i in targets if str(i.state).lower() not in GONE]
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="terminate") as pool:
        futures = {pool.submit(provider.destroy, instance): (name, instance) for name, instance in targets}
        for future, (name, instance) in futures.items():
            try:
                future.result()
            except CloudError as err:
                outcome.failed[name] = str(err)
                outcome.remaining.append(instance.id)
    for node in nodes:
        if node.name not in outcome.failed:
            node.state = "terminated"
            outcome.done.append(node)
    _release_floating_ips(provider, outcome)
    return outcome


def _release_floating_ips(provider: CloudProvider, outcome: Outcome) -> None:
    """Give back the floating IPs ``request_floating_ip`` took for the nodes terminated."""
    for node in outcome.done:
        if node.extra.get("floating_ip"):
            try:
                provider.release_floating_ip(node.extra["floating_ip"])
            except CloudError as err:
                log.warning("%s: could not release floating IP %s: %s", node.name,
                            node.extra["floating_ip"], err)
                continue
            node.extra.pop("floating_ip")


def wait_terminated(provider: CloudProvider, cluster: Cluster, timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = [n.instance_id for n in cluster.get_all_nodes()]
        alive = [i for i in provider.list_instances(known_ids=known) if str(i.state).lower() not in GONE]
        if not alive:
            return True
        time.sleep(2)
    return False


def stop_instances(provider: CloudProvider, cluster: Cluster) -> Outcome:
    """Pause: stop every node without terminating it."""
    return _each_instance(provider, cluster, provider.stop, "stopped", "pause")


def start_instances(provider: CloudProvider, cluster: Cluster) -> Outcome:
    """Resume: start every stopped node again."""
    return _each_instance(provider, cluster, provider.start, "pending", "resume")


def _each_instance(provider: CloudProvider, cluster: Cluster, action, state: str, verb: str) -> Outcome:
    instances = {i.id: i for i in refresh(provider, cluster)}
    outcome = Outcome()
    for node in cluster.get_all_nodes():
        if not node.instance_id:
            continue
        instance = instances.get(node.instance_id)
        if instance is None:
            outcome.failed[node.name] = "no instance on the cloud"
            continue
        try:
            action(instance)
        except NotImplementedError:
            raise CloudError(f"cannot {verb} cluster '{cluster.name}': this cloud's driver "
                             f"({type(provider.driver).__name__}) cannot stop and start nodes") from None
        except CloudError as err:
            outcome.failed[node.name] = str(err)
            continue
        node.state = state
        outcome.done.append(node)
    cluster.save()
    return outcome
