"""The cluster operations: the one path that the CLI, the Python API and any automation share.

``launch`` (start a cluster from a template, or resume an interrupted
start), ``start``, ``stop``, ``resize``, ``remove_node``, ``pause``,
``resume``, ``setup``, ``bake`` and ``refresh``. Each takes a cluster (made or loaded
by ``Configurator``, which gives it its cloud provider, setup provider and
template) and options; holds the cluster's lock while it changes it,
re-reading the cluster once it holds it; writes state ahead of every cloud
call (``lifecycle``); reports progress through ``Events`` callbacks; and
raises the project's exceptions (``exceptions``). Nothing here prints or
reads a terminal: the CLI gives its own callbacks.
"""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from elasticcluster import cluster as model
from elasticcluster import lifecycle
from elasticcluster.cluster import Cluster, Node, check_cluster_name
from elasticcluster.exceptions import (
    Cancelled,
    CloudError,
    ClusterChanged,
    ClusterExists,
    ClusterNotFound,
    ElasticClusterError,
    Interrupted,
    SetupFailed,
    Terminated,
    UsageError,
)
from elasticcluster.tags import TAG_CLUSTER

log = logging.getLogger("elasticcluster")


def _log_progress(message: str) -> None:
    log.info("%s", message)


def _always(question: str) -> bool:
    return True


@dataclass
class Events:
    """How an operation talks to whoever runs it (every callback is optional).

    ``progress``: one line of progress ("created compute001 (i-0abc)").
    ``confirm``: asked before a destructive step (terminating nodes, pausing);
    False cancels the operation before anything changes. The API's default
    answers yes: calling ``stop`` is the decision.
    ``setup_listener``: given the node names, returns a ``playbook.Listener``
    that is told of the setup's plays, tasks and results.
    ``ansible_verbosity``: 0 keeps Ansible's own output in the cluster's
    ``ansible.log``; 1 or more shows it (``-v`` more for each step above 1).
    """

    progress: Callable[[str], None] = _log_progress
    confirm: Callable[[str], bool] = _always
    setup_listener: Callable[[list[str]], object] | None = None
    ansible_verbosity: int = 0


# -- start ----------------------------------------------------------------------------


def launch(configurator, template: str, name: str | None = None, node_counts: dict[str, int] | None = None,
           *, setup: bool = True, max_workers: int | None = None, events: Events | None = None) -> Cluster:
    """``elasticcluster start``: a new cluster from ``template`` (named ``name``, default the
    template's), or the rest of a cluster of that name whose start was interrupted."""
    events = events or Events()
    name = check_cluster_name(template if name is None else name)
    spec = configurator.config.template(template)  # a bad template or --nodes: nothing is written
    if node_counts:
        spec.with_node_counts(node_counts)
    with configurator.repository.lock(name):
        try:
            cluster = configurator.create_cluster(template, name, node_counts=node_counts)
        except ClusterExists:
            cluster = configurator.load_cluster(name)
            if cluster.extra.get("started") or cluster.template != template:
                raise
            log.warning("cluster '%s' was interrupted while starting: resuming it", name)
        start(cluster, setup=setup, max_workers=max_workers, events=events)
    return cluster


def start(cluster: Cluster, *, setup: bool = False, max_workers: int | None = None,
          min_nodes: dict[str, int] | None = None, events: Events | None = None) -> None:
    """Create the nodes not created yet, wait until every node runs and accepts SSH, then
    (``setup``) set the cluster up. Run again after an interruption, it goes on where it
    stopped: instances already made are found by tag or client token, never made twice."""
    events = events or Events()
    provider = _cloud(cluster)
    if setup:
        _setup_provider(cluster)

    def advice() -> str:
        if cluster.extra.get("started"):
            return f"Run `elasticcluster setup {cluster.name}` to set it up"
        return (f"Run `elasticcluster start {cluster.template} -n {cluster.name}` to create the rest, "
                f"or `elasticcluster stop {cluster.name}` to remove them")

    with _changing(cluster, events, stored=False, advice=advice):
        if min_nodes:
            cluster.extra["min_nodes"] = dict(min_nodes)
        if not cluster.get_all_nodes():
            raise UsageError(f"cluster '{cluster.name}' has no nodes to start")
        cluster.extra.setdefault("started", False)
        if not cluster.extra["started"]:
            _adopt_kept_images(cluster, events)
        cluster.save()
        try:
            lifecycle.refresh(provider, cluster)
            _record_kind_sizes(cluster, provider)
            todo = [n for n in cluster.get_all_nodes() if not n.instance_id]
            # nodes created by an interrupted start that were never seen to accept SSH
            unseen = [n for n in cluster.get_all_nodes() if n.instance_id and not n.extra.get("ssh_host_key")]
            _create(cluster, provider, todo, max_workers, events, waiting=unseen)
        except ElasticClusterError as err:
            _after_failed_start(cluster, provider, err)
            raise
        cluster.extra["started"] = True
        cluster.save()
        # the kept images are this cluster's now: its stop deletes them (unless --keep-images)
        cluster.repository.forget_kept_images(cluster.name, _image_ids(cluster))
        if setup:
            _run_setup(cluster, (), events)


def _record_kind_sizes(cluster: Cluster, provider) -> None:
    """CPUs and memory of each autoscaled kind's flavor, for the scheduler to declare the nodes
    autoscale may add before any of them exists."""
    spec = cluster.template_spec
    if spec is None:
        return
    sizes = cluster.extra.setdefault("kind_sizes", {})
    for kind, node_kind in spec.kinds.items():
        if node_kind.elastic_names and kind not in sizes:
            cpus, memory = lifecycle.size_facts(provider.size(node_kind.flavor))
            sizes[kind] = {"cpus": cpus, "memory_mb": memory}
def _adopt_kept_images(cluster: Cluster, events: Events) -> None:
    """A new cluster named like one stopped with ``--keep-images``, from the same template, takes
    its images: the nodes of each kind not created yet boot from the kind's image."""
    kept = cluster.repository.kept_images(cluster.name)
    if not kept:
        return
    templates = {record.get("template") for record in kept.values()} - {None}
    if cluster.template and templates and templates != {cluster.template}:
        log.warning("the images kept when cluster '%s' stopped were made from template %s, not %s: "
                    "not used (they stay kept: %s)", cluster.name, ", ".join(sorted(templates)),
                    cluster.template, ", ".join(r["id"] for r in kept.values()))
        return
    images = cluster.images
    for kind, record in kept.items():
        images.setdefault(kind, {k: v for k, v in record.items() if k != "template"})
    cluster.extra["images"] = images
    for kind, nodes in sorted(cluster.nodes.items()):
        fresh = [n for n in nodes if not n.instance_id and not n.extra.get("client_token")]
        record = _usable_image(cluster, kind) if fresh else None
        if record is not None:
            _boot_from(record, fresh)
            events.progress(f"{len(fresh)} {kind} node(s) boot from image {record['id']} (kept by "
                            f"`stop --keep-images`)")


def _after_failed_start(cluster: Cluster, provider, err: ElasticClusterError) -> None:
    """Forget a cluster that has nothing on the cloud; otherwise say how to go on.

    A create call that was sent may have made an instance whose answer was lost: when any
    was sent, the cloud is asked once more (by tag) before the cluster is forgotten, and
    if it cannot answer, the state is kept for ``stop``.
    """
    if isinstance(err, Interrupted):
        return
    nodes = cluster.get_all_nodes()
    if not cluster.extra.get("started") and not any(n.instance_id for n in nodes):
        if not any(n.extra.get("client_token") for n in nodes):
            cluster.repository.delete(cluster)  # no create call was ever sent
            return
        try:
            lifecycle.refresh(provider, cluster)
        except ElasticClusterError:
            pass
        else:
            if not any(n.instance_id for n in cluster.get_all_nodes()):
                cluster.repository.delete(cluster)
                return
            cluster.save()
    err.args = (f"{err}\nThe nodes created are recorded: run `elasticcluster start {cluster.template} "
                f"-n {cluster.name}` to try again, or `elasticcluster stop {cluster.name}`",)


def _create(cluster: Cluster, provider, nodes: list[Node], max_workers: int | None, events: Events,
            waiting: list[Node] = (), minimums: dict[str, int] | None = None) -> None:
    """Create ``nodes`` (the frontend kind first), wait until they and ``waiting`` run and
    accept SSH (``lifecycle.provision``)."""
    from elasticcluster.ssh_keys import ensure_key_pair, read_public_key

    if not nodes and not waiting:
        return
    if ensure_key_pair(cluster.user_key_private, cluster.user_key_public):
        log.warning("made a new SSH key pair for elasticcluster: %s", cluster.user_key_private)
    nodes = sorted(nodes, key=lambda n: (n.kind != cluster.ssh_to, n.kind, n.name))
    lifecycle.provision(provider, cluster, nodes, public_key=read_public_key(cluster.user_key_public),
                        max_workers=max_workers or int(_setting(cluster, "thread_pool_max_size", 10)),
                        startup_timeout=float(_setting(cluster, "startup_timeout", cluster.startup_timeout)),
                        ssh_probe_timeout=float(_setting(cluster, "ssh_probe_timeout", 5)),
                        floating_ip=bool(provider.cloud.get("request_floating_ip")),
                        progress=lifecycle.Progress(event=events.progress), waiting=list(waiting),
                        minimums=minimums)


# -- stop -----------------------------------------------------------------------------


def stop(cluster: Cluster, *, force: bool = False, wait: bool = False, keep_images: bool = False,
         events: Events | None = None) -> dict[str, dict]:
    """Terminate every node, and any instance the cloud tags as this cluster's, then delete the
    cluster's baked images (unless ``keep_images``) and forget the cluster.

    When some instances may still run (a terminate call failed, or the cloud could not be
    asked for the cluster's tags), the cluster is kept so that ``stop`` can be run again;
    with ``force`` the user is told which ids remain and asked whether to forget it anyway
    (``events.confirm``; the CLI's ``--yes`` answers yes). An image that could not be
    deleted keeps the cluster too (``force`` forgets it, naming the image).

    Returns the images kept (kind -> record, with ``keep_images``): a new cluster started
    under this name from the same template boots from them; a template may name one as
    ``image_id``.
    """
    events = events or Events()
    try:
        provider, problem = _cloud(cluster), None
    except ElasticClusterError as err:  # e.g. its cloud section is gone from the configuration
        if not force:
            raise
        provider, problem = None, err
    question = (f"Do you want to stop cluster '{cluster.name}' and terminate its "
                f"{len(cluster.get_all_nodes())} node(s)?")

    def advice() -> str:
        return f"Run `elasticcluster stop {cluster.name}` again"

    with _changing(cluster, events, question, advice=advice):
        if problem is not None:
            ids = [n.instance_id for n in cluster.get_all_nodes() if n.instance_id]
            _forget_anyway(cluster, events, str(problem), ids, unlisted=True)
        outcome = lifecycle.terminate_instances(provider, cluster, force=force)
        if outcome.failed or outcome.unlisted:
            for node in outcome.done:
                if node in cluster.get_all_nodes():
                    cluster.remove_node(node)
            cluster.save()
            reasons = [f"{name}: {why}" for name, why in outcome.failed.items()]
            if outcome.unlisted:
                reasons.append(f"the cloud could not list the cluster's instances ({outcome.unlisted})")
            if not force:
                raise CloudError(f"could not terminate every node of '{cluster.name}' "
                                 f"({'; '.join(reasons)}); the state file keeps them: run stop again, "
                                 "or add --force")
            _forget_anyway(cluster, events, "; ".join(reasons), outcome.remaining, bool(outcome.unlisted))
        if wait and not lifecycle.wait_terminated(provider, cluster):
            log.warning("some instances of '%s' are still shutting down", cluster.name)
        kept = _images_at_stop(cluster, provider, events, force=force, keep=keep_images)
        if cluster.setup_provider is not None and hasattr(cluster.setup_provider, "cleanup"):
            cluster.setup_provider.cleanup(cluster)
        cluster.repository.delete(cluster)
    events.progress(f"Cluster '{cluster.name}' stopped.")
    return kept


def _images_at_stop(cluster: Cluster, provider, events: Events, *, force: bool, keep: bool) -> dict:
    """After the nodes are gone: delete the cluster's images (those a later bake replaced, and,
    unless ``keep``, the current ones), or keep them for a new cluster of this name."""
    from elasticcluster import baking

    images, old = cluster.images, cluster.old_images
    kept = images if keep else {}
    if kept:
        cluster.repository.keep_images(cluster.name, {kind: {**record, "template": cluster.template}
                                                      for kind, record in kept.items()})
        events.progress(f"kept image(s) of '{cluster.name}': "
                        + ", ".join(f"{kind}: {r['id']}" for kind, r in sorted(kept.items())))
    doomed = old + ([] if keep else list(images.values()))
    if not doomed:
        return kept
    done, failed = baking.delete_images(provider, doomed)
    gone = {record["id"] for record in done}
    cluster.repository.forget_kept_images(cluster.name, gone)
    if done:
        events.progress(f"deleted image(s) {', '.join(sorted(gone))}")
    if not failed:
        return kept
    reasons = "; ".join(f"{ident}: {why}" for ident, why in failed.items())
    if force:
        cluster.repository.delete(cluster)
        raise CloudError(f"--force: forgot cluster '{cluster.name}' although its image(s) "
                         f"{', '.join(failed)} could not be deleted ({reasons}); delete them with the "
                         "cloud's own tools")
    cluster.extra["images"] = {} if keep else {k: r for k, r in images.items() if r["id"] not in gone}
    cluster.extra["old_images"] = [r for r in old if r["id"] not in gone]
    for node in cluster.get_all_nodes():
        cluster.remove_node(node)  # terminated: a second stop only deletes the images
    cluster.save()
    raise CloudError(f"the nodes of '{cluster.name}' are terminated, but not every image of it could be "
                     f"deleted ({reasons}); the state file keeps them: run stop again, or add --force "
                     "to leave them on the cloud")


def stop_by_tags(configurator, name: str, cloud: str, *, events: Events | None = None) -> None:
    """``stop --force NAME --cloud CLOUD``: terminate every instance that cloud tags as cluster
    NAME's, then forget what is stored of NAME: for a cluster whose state file cannot be read
    (or is gone), the cloud's tags are the last word on what belongs to it."""
    from elasticcluster.cloud import provider_for

    events = events or Events()
    name = check_cluster_name(name)
    provider = provider_for(configurator.config, cloud, name)
    if not events.confirm(f"Terminate every instance tagged {TAG_CLUSTER}={name} on cloud '{cloud}' and "
                          f"forget cluster '{name}'?"):
        raise Cancelled("cancelled: nothing was changed")
    repository = configurator.repository
    ghost = Cluster(name, repository=repository)
    with lifecycle.sigterm_as_interrupt(), repository.lock(name):
        try:
            outcome = lifecycle.terminate_instances(provider, ghost)
        except KeyboardInterrupt as interrupt:
            raise Interrupted(f"interrupted while terminating the instances of '{name}'; run the same "
                              "command again", isinstance(interrupt, Terminated)) from None
        if outcome.unlisted or outcome.failed:
            raise CloudError(f"cluster '{name}': {outcome.unlisted or '; '.join(outcome.failed.values())}; "
                             "nothing was forgotten: run the same command again")
        repository.delete(ghost)
    events.progress(f"Cluster '{name}' stopped by its tags on cloud '{cloud}'.")


def _forget_anyway(cluster: Cluster, events: Events, why: str, ids: list[str], unlisted: bool) -> None:
    """``stop --force`` that could not make sure every instance is gone: name what may still
    run, and forget the cluster only if the user says so (raises CloudError either way)."""
    remains = f"instance(s) {', '.join(ids)} may still run" if ids else "no recorded instance remains"
    if unlisted:
        remains += f", and others may carry the tag {TAG_CLUSTER}={cluster.name}"
    images = sorted(_image_ids(cluster))
    if images:
        remains += f"; its image(s) {', '.join(images)} stay on the cloud"
    question = (f"Cluster '{cluster.name}': {why}; {remains}. Forget the cluster anyway (nothing will "
                "find them again but the cloud's own tools)?")
    if not events.confirm(question):
        raise CloudError(f"{why}; {remains}. Cluster '{cluster.name}' is kept: run "
                         f"`elasticcluster stop {cluster.name}` again when the cloud answers")
    cluster.repository.delete(cluster)
    raise CloudError(f"{why}; --force: forgot cluster '{cluster.name}' although {remains} "
                     f"(find them on the cloud by the tag {TAG_CLUSTER}={cluster.name})")


# -- resize and remove-node ---------------------------------------------------------------


def resize(cluster: Cluster, *, add: dict[str, int] | None = None, remove: dict[str, int] | None = None,
           setup: bool = True, max_workers: int | None = None, events: Events | None = None) -> None:
    """Remove nodes (the newest of each kind first), add nodes, then set the cluster up again
    (unless not ``setup``), so that every node knows of the change."""
    events = events or Events()
    add, remove = dict(add or {}), dict(remove or {})
    if not any(add.values()) and not any(remove.values()):
        raise UsageError("resize: nothing to do; give nodes to add (-a N:KIND) and/or to remove "
                         "(-r N:KIND)")
    for kind in {**add, **remove}:
        if cluster.template_spec is not None and kind in cluster.template_spec.kinds \
                and cluster.template_spec.kinds[kind].elastic_names:
            raise UsageError(f"resize: the {kind} nodes of '{cluster.name}' are autoscaled "
                             f"({kind}_nodes_max): `elasticcluster autoscale {cluster.name}` adds and "
                             "removes them as SLURM asks")
    for kind in add:
        _check_kind(cluster, kind, add[kind])
    provider = _cloud(cluster)
    if setup:
        _setup_provider(cluster)
    chosen = _nodes_to_remove(cluster, remove)
    question = (f"Remove {', '.join(n.name for n in chosen)} from cluster '{cluster.name}'? "
                "Jobs running on them are lost.") if chosen else None
    with _changing(cluster, events, question, advice=lambda: _next_steps(cluster)):
        removing = _nodes_to_remove(cluster, remove)
        if [n.name for n in removing] != [n.name for n in chosen]:
            raise ClusterChanged(f"cluster '{cluster.name}' changed while you were asked; nothing was "
                                 "done: run the command again")
        _reconcile(cluster, provider, events)
        if removing:
            _remove(provider, cluster, removing)
        added = []
        for kind, count in add.items():
            nodes = _add_nodes(cluster, kind, count)
            if nodes and nodes[0].extra.get("baked"):
                events.progress(f"{len(nodes)} new {kind} node(s) boot from baked image {nodes[0].image_id}")
            added += nodes
        _check_size(cluster)
        if added:
            cluster.save()
            try:
                _create(cluster, provider, added, max_workers, events)
            except (CloudError, UsageError):
                try:  # the nodes that could not be made go; those made stay, for stop to find
                    _resolve_missing(cluster, provider, events)
                except ElasticClusterError:
                    pass
                raise
        if setup:  # the new nodes get the whole setup, the others learn of the change
            _run_setup(cluster, (), events, new=[n.name for n in added])
    events.progress(f"Cluster '{cluster.name}' now has: "
                    + (", ".join(f"{n} {k}" for k, n in cluster.node_counts().items()) or "no nodes"))


def remove_node(cluster: Cluster, node_name: str, *, setup: bool = True,
                events: Events | None = None) -> None:
    """Terminate one node and forget it, then set the others up again so that they forget it
    too (``/etc/hosts``, the scheduler's node list)."""
    events = events or Events()
    provider = _cloud(cluster)
    if setup:
        _setup_provider(cluster)
    node = cluster.get_node_by_name(node_name)
    question = (f"Remove node {node.name} ({node.instance_id or 'no instance'}) from cluster "
                f"'{cluster.name}'?")
    with _changing(cluster, events, question, advice=lambda: _next_steps(cluster)):
        node = cluster.get_node_by_name(node_name)
        _reconcile(cluster, provider, events)
        _remove(provider, cluster, [node])
        events.progress(f"Node {node_name} removed from cluster '{cluster.name}'.")
        if setup:  # the others forget it
            _run_setup(cluster, (), events, new=[])


def scale(cluster: Cluster, *, add: dict[str, list[str]] | None = None, remove: list[str] = (),
          events: Events | None = None) -> list[str]:
    """The autoscaler's resize: make the nodes named in ``add`` (kind -> names, as the
    scheduler names them) and terminate those named in ``remove``, the same steps as
    ``resize`` without its setup (the autoscaler sets up the new nodes itself). Returns the
    names in ``add`` that could not be made: those are terminated and forgotten.

    A node in ``add`` that exists already but was never seen to accept SSH (an earlier
    autoscaler was killed while making it) is waited for with the new ones."""
    events = events or Events()
    provider = _cloud(cluster)
    wanted = [name for names in (add or {}).values() for name in names]
    with _changing(cluster, events, advice=lambda: f"Run `elasticcluster autoscale {cluster.name}` "
                                                   "again: it goes on where this stopped"):
        _reconcile(cluster, provider, events)
        by_name = {n.name: n for n in cluster.get_all_nodes()}
        going = [by_name[name] for name in remove if name in by_name]
        if going:
            _remove(provider, cluster, going)
        added = []
        for kind, names in (add or {}).items():
            new = [name for name in names if name not in by_name]
            if new:
                made = cluster.template_spec.add_nodes(cluster, kind, len(new), names=new)
                record = _usable_image(cluster, kind)
                if record is not None:  # a baked image: the new node comes up set up already
                    _boot_from(record, made)
                added += made
        unseen = [by_name[name] for name in wanted if name in by_name
                  and by_name[name].instance_id and not by_name[name].extra.get("ssh_host_key")]
        _check_size(cluster)
        if added or unseen:
            cluster.save()
            # each node may fail alone: the others come up, the failed ones are dropped
            fresh = {id(n) for n in [*added, *unseen]}
            minimums = {kind: sum(1 for n in nodes if id(n) not in fresh)
                        for kind, nodes in cluster.nodes.items()}
            try:
                _create(cluster, provider, added, None, events, waiting=unseen, minimums=minimums)
            except (CloudError, UsageError) as err:
                log.warning("%s", err)
                _drop_all(provider, cluster, [*added, *unseen], events)
        have = {n.name for n in cluster.get_all_nodes()}
    return [name for name in wanted if name not in have]


def _drop_all(provider, cluster: Cluster, nodes: list[Node], events: Events) -> None:
    """Terminate and forget ``nodes`` (those the cluster still holds)."""
    nodes = [n for n in nodes if n in cluster.get_all_nodes()]
    try:
        _resolve_missing(cluster, provider, events)
    except ElasticClusterError:
        pass
    nodes = [n for n in nodes if n in cluster.get_all_nodes()]
    if nodes:
        lifecycle.drop_nodes(provider, cluster, nodes)


def _next_steps(cluster: Cluster) -> str:
    return (f"Run `elasticcluster list-nodes -u {cluster.name}` to see what exists (nodes left half-made "
            f"are found or forgotten by the next command), then the same command again; "
            f"`elasticcluster stop {cluster.name}` removes the whole cluster")


def _check_size(cluster: Cluster) -> None:
    """A cluster holds at most ``cluster.MAX_NODES`` nodes."""
    total = len(cluster.get_all_nodes())
    if total > model.MAX_NODES:
        raise UsageError(f"cluster '{cluster.name}' would have {total} nodes; a cluster holds at most "
                         f"{model.MAX_NODES}")


def _check_kind(cluster: Cluster, kind: str, count: int) -> None:
    spec = cluster.template_spec
    if spec is not None and kind not in spec.kinds:
        raise UsageError(f"resize -a {count}:{kind}: template '{spec.name}' has no node kind "
                         f"'{kind}'; its kinds are: {', '.join(sorted(spec.kinds))}")
    if spec is None and not cluster.nodes.get(kind):
        raise UsageError(f"resize -a {count}:{kind}: cluster '{cluster.name}' has no template to "
                         f"make {kind} nodes from (load it with Configurator.load_cluster)")


def _add_nodes(cluster: Cluster, kind: str, count: int) -> list[Node]:
    """New nodes of ``kind``, as the cluster's template makes them (else like its last one),
    booting from the kind's baked image when it has one."""
    if cluster.template_spec is not None:
        nodes = cluster.template_spec.add_nodes(cluster, kind, count)
    else:
        like = cluster.nodes[kind][-1]
        nodes = cluster.add_nodes(kind, count, like.image_id, like.image_user, like.flavor,
                                  like.security_group, like.image_userdata,
                                  network_ids=list(like.network_ids), login=like.login,
                                  **{k: v for k, v in like.extra.items() if k.startswith("ex_")})
    record = _usable_image(cluster, kind)
    if record is not None:
        _boot_from(record, nodes)
    return nodes


def _nodes_to_remove(cluster: Cluster, counts: dict[str, int]) -> list[Node]:
    chosen = []
    for kind, count in counts.items():
        nodes = cluster.nodes.get(kind, [])
        if count > len(nodes):
            raise UsageError(f"resize -r {count}:{kind}: cluster '{cluster.name}' has "
                             f"{len(nodes)} {kind} node(s)")
        if count:
            chosen += sorted(nodes, key=lambda n: n.name)[len(nodes) - count:]
    return chosen


def _remove(provider, cluster: Cluster, nodes: list[Node]) -> None:
    from elasticcluster import ssh

    outcome = lifecycle.terminate_instances(provider, cluster, nodes, lost=False)
    for node in outcome.done:
        cluster.remove_node(node)
    cluster.save()
    # a later node may get a removed node's address: its old host key must go
    if outcome.done:
        ssh.write_known_hosts(cluster)
    if outcome.failed:
        raise CloudError("could not terminate: " + "; ".join(f"{n}: {w}" for n, w in outcome.failed.items()))


# -- pause and resume -----------------------------------------------------------------------


def pause(cluster: Cluster, *, events: Events | None = None) -> None:
    """Stop every node without terminating it (its disk is kept)."""
    events = events or Events()
    provider = _cloud(cluster)
    with _changing(cluster, events, f"Pause cluster '{cluster.name}' (stop its nodes; disks are kept)?",
                   advice=lambda: f"Run `elasticcluster pause {cluster.name}` again"):
        _resolve_missing(cluster, provider, events)
        outcome = lifecycle.stop_instances(provider, cluster)
        _fail_on(outcome, cluster, "pause")
    events.progress(f"Cluster '{cluster.name}' paused.")


def resume(cluster: Cluster, *, events: Events | None = None) -> None:
    """Start the nodes of a paused cluster again; wait until they run and accept SSH (with the
    host keys recorded at first contact: addresses may have changed, keys may not)."""
    from elasticcluster import ssh

    events = events or Events()
    provider = _cloud(cluster)
    with _changing(cluster, events, advice=lambda: f"Run `elasticcluster resume {cluster.name}` again"):
        _resolve_missing(cluster, provider, events)
        outcome = lifecycle.start_instances(provider, cluster)
        timeout = float(_setting(cluster, "startup_timeout", cluster.startup_timeout))
        late = lifecycle.wait_instances(provider, cluster, outcome.done, timeout=timeout,
                                        progress=lifecycle.Progress(event=events.progress))
        for node in late:
            outcome.failed[node.name] = "not running in time"
        _fail_on(outcome, cluster, "resume")
        ssh.write_known_hosts(cluster)
        lifecycle.wait_ssh(provider, cluster, outcome.done, probe_timeout=float(
            _setting(cluster, "ssh_probe_timeout", 5)), timeout=timeout,
            progress=lifecycle.Progress(event=events.progress), drop=False)
    events.progress(f"Cluster '{cluster.name}' resumed.")


def _fail_on(outcome, cluster: Cluster, verb: str) -> None:
    if outcome.failed:
        raise CloudError(f"could not {verb} every node of '{cluster.name}': " + "; ".join(
            f"{n}: {w}" for n, w in outcome.failed.items()))


# -- setup and refresh ------------------------------------------------------------------------


def setup(cluster: Cluster, *, extra_args: list[str] = (), limit: list[str] | None = None,
          new: list[str] | None = None, full: bool = False, events: Events | None = None) -> None:
    """Run the setup (the template's playbook) on every node, or on the nodes named in
    ``limit``; idempotent. SetupFailed names each failed host, its task and the message.
    The nodes set up are marked so (``node.extra["set_up"]``). With ``new``, only those nodes
    (and any never set up) get the whole setup; the others only learn of them.

    A whole setup of a cluster that nothing changed since its last whole setup (playbooks,
    settings, nodes, and on every node what the playbook manages: ``converged``) does not
    run the playbook, unless ``full``."""
    events = events or Events()
    _setup_provider(cluster)
    with _changing(cluster, events, advice=lambda: f"Run `elasticcluster setup {cluster.name}` again"):
        if _unsettled(cluster):
            _reconcile(cluster, _cloud(cluster), events)
        _run_setup(cluster, extra_args, events, limit=limit, new=new, full=full)
    events.progress(f"Cluster '{cluster.name}' is set up." if limit is None else
                    f"Set up: {', '.join(limit)}.")


def setup_succeeds(cluster: Cluster, *, extra_args: list[str] = (), full: bool = False,
                   events: Events | None = None) -> bool:
    """``setup`` as the seed's ``Cluster.setup()``: True on success, False (logged) on a failed setup."""
    try:
        setup(cluster, extra_args=extra_args, full=full, events=events)
    except SetupFailed as err:
        log.error("%s", err)
        return False
    return True


def _setup_provider(cluster: Cluster):
    if cluster.setup_provider is None:
        raise ElasticClusterError(f"cluster '{cluster.name}' has no setup provider: load it with "
                                  "Configurator.load_cluster, or give Cluster() a setup_provider")
    return cluster.setup_provider


def _run_setup(cluster: Cluster, extra_args, events: Events, limit: list[str] | None = None,
               new: list[str] | None = None, full: bool = False) -> None:
    """Run the setup on every node (or those named in ``limit``); mark them set up.

    ``new``: the nodes that get the whole setup (with those never set up); every other node
    only learns of them (``elasticcluster_learn_only`` in the playbooks: /etc/hosts, known
    hosts, the scheduler's node list). None: every node gets the whole setup. A whole setup
    of a cluster as its last whole setup left it is skipped unless ``full`` (``converged``)."""
    from elasticcluster import converged

    provider = _setup_provider(cluster)
    whole = not extra_args  # not a part of the setup (--tags ...)
    everything = whole and limit is None and new is None  # every task on every node
    fingerprint = provider.fingerprint() if hasattr(provider, "fingerprint") else None
    key = provider.state_key(cluster, fingerprint) if everything and hasattr(provider, "state_key") else None
    if key is not None and not full and _unchanged(cluster, key, events):
        return
    if limit:
        extra_args = [*extra_args, "--limit", ",".join(limit)]
    if new is not None and hasattr(provider, "fingerprint") and (
            fingerprint is None or cluster.extra.get("setup_fingerprint") != fingerprint):
        # the playbooks or the setup's settings changed since the last whole setup (or it is
        # not known): every node needs the whole setup, not only to learn of the new nodes
        events.progress("the playbooks or the setup's settings changed since the last whole setup (or it is "
                        "not recorded): every node gets the whole setup")
        new = None
    if new is not None:
        in_full = sorted({*new, *(n.name for n in cluster.get_all_nodes() if not n.extra.get("set_up"))})
        extra_args = [*extra_args, "-e", json.dumps({"elasticcluster_new_nodes": in_full})]
    if not hasattr(provider, "run_setup"):  # a setup provider of the seed's contract
        if not provider.setup_cluster(cluster):
            raise SetupFailed(f"setup of cluster '{cluster.name}' failed")
        _mark_set_up(cluster, limit)
        _bake_after_first_setup(cluster, events)
        return
    listener = events.setup_listener([n.name for n in cluster.get_all_nodes()]) \
        if events.setup_listener else None
    run = provider.run_setup(cluster, extra_args=list(extra_args), verbosity=events.ansible_verbosity,
                             listener=listener)
    if run.returncode != 0:
        if cluster.extra.get("converged_key"):
            converged.forget(cluster)  # the next setup runs the playbook, whatever the nodes look like
            cluster.save()
        report = provider.failure_report(run) or f"ansible-playbook exited with status {run.returncode}"
        where = f"; Ansible's output: {run.log_path}" if run.log_path else ""
        raise SetupFailed(f"setup of cluster '{cluster.name}' failed:\n  " + report.replace("\n", "\n  ")
                          + where + f"\nFix it and run `elasticcluster setup {cluster.name}` again")
    if whole and limit is None and new is None and fingerprint is not None:  # (new may be None by now)
        cluster.extra["setup_fingerprint"] = fingerprint  # every node had the whole setup of it
    if key is not None:
        converged.record(cluster, key, run.manages)
    _mark_set_up(cluster, limit)
    if whole:
        _bake_after_first_setup(cluster, events)


def _unchanged(cluster: Cluster, key: str | None, events: Events) -> bool:
    """True (and said) when every node is as the last whole setup under ``key`` left it."""
    from elasticcluster import converged

    recorded = bool(cluster.extra.get("converged_key"))
    if not recorded:
        return False  # never recorded (a first setup): nothing to say
    found = converged.check(cluster, key)
    if found.unchanged:
        count = found.counts
        events.progress(f"Nothing the setup manages changed since the last whole setup ({count['files']} "
                        f"files and folders, {count['services']} services, {count['users']} users and the "
                        f"installed packages checked on {count['nodes']} nodes): the playbook does not run. "
                        f"`elasticcluster setup --full {cluster.name}` runs it anyway.")
        return True
    events.progress(f"{found.reason}: the whole setup runs.")
    return False


def _mark_set_up(cluster: Cluster, limit: list[str] | None) -> None:
    for node in cluster.get_all_nodes():
        if limit is None or node.name in limit:
            node.extra["set_up"] = True
    cluster.save()


# -- bake -------------------------------------------------------------------------------------


def bake(cluster: Cluster, *, kinds: list[str] | None = None,
         events: Events | None = None) -> dict[str, dict]:
    """``elasticcluster bake``: an image of one set-up node of each kind (``kinds``; default all),
    without its SSH host keys or the cluster's secrets (``baking``). New nodes of that kind boot
    from it: those ``resize`` adds, and those of a new cluster of this name after ``stop
    --keep-images``. A kind's earlier image is deleted. Returns kind -> the image's record
    (``id``, ``name``, ``from``: the node, ``made``: when, ``base``: the template's image)."""
    events = events or Events()
    provider = _cloud(cluster)
    with _changing(cluster, events, advice=lambda: f"Run `elasticcluster bake {cluster.name}` again"):
        names = sorted(cluster.nodes)
        if not names:
            raise UsageError(f"cluster '{cluster.name}' has no nodes to bake")
        unknown = [kind for kind in kinds or () if kind not in cluster.nodes]
        if unknown:
            raise UsageError(f"bake --kind {unknown[0]}: cluster '{cluster.name}' has no {unknown[0]} "
                             f"nodes; its kinds are: {', '.join(names)}")
        made = _bake(cluster, provider, list(dict.fromkeys(kinds)) if kinds else names, events)
    events.progress(f"Cluster '{cluster.name}': baked " + ", ".join(
        f"{kind}: {record['id']}" for kind, record in made.items()))
    return made


def _bake(cluster: Cluster, provider, kinds: list[str], events: Events) -> dict[str, dict]:
    """Bake ``kinds``: per kind, the first node that runs and was seen to accept SSH."""
    from elasticcluster import baking

    paths = baking.read_secrets(baking.secrets_file(cluster))
    instances = {i.id: i for i in lifecycle.refresh(provider, cluster)}
    cluster.save()
    sources = {}
    for kind in kinds:
        node = next((n for n in cluster.nodes.get(kind, []) if n.state == "running"
                     and n.extra.get("ssh_host_key") and n.instance_id in instances), None)
        if node is None:
            raise CloudError(f"cannot bake the {kind} nodes of '{cluster.name}': none of them runs and has "
                             f"accepted SSH (see `elasticcluster list-nodes -u {cluster.name}`)")
        sources[kind] = node
    made = {}
    for kind, node in sources.items():
        made[kind] = baking.bake_node(provider, cluster, node, instances[node.instance_id], kind, paths,
                                      base=_base_image(cluster, kind, node),
                                      groups=_kind_groups(cluster, kind), progress=events.progress)
        _delete_old_images(cluster, provider, events)
    return made


def _bake_after_first_setup(cluster: Cluster, events: Events) -> None:
    """``bake_after_setup = yes``: after the cluster's first successful (whole) setup, bake every
    kind that has no image yet."""
    if not _setting(cluster, "bake_after_setup", False) or cluster.extra.get("baked_after_setup"):
        return
    kinds = [kind for kind in sorted(cluster.nodes) if _usable_image(cluster, kind) is None]
    if kinds:
        events.progress(f"bake_after_setup: baking an image of the {', '.join(kinds)} nodes")
        try:
            _bake(cluster, _cloud(cluster), kinds, events)
        except CloudError as err:
            raise CloudError(f"the setup of '{cluster.name}' succeeded, but baking its images failed: {err}\n"
                             f"Run `elasticcluster bake {cluster.name}` to try again") from err
    cluster.extra["baked_after_setup"] = True
    cluster.save()


def _delete_old_images(cluster: Cluster, provider, events: Events) -> None:
    """Delete the images later bakes replaced; one still in use stays recorded for ``stop``."""
    from elasticcluster import baking

    old = cluster.old_images
    if not old:
        return
    done, failed = baking.delete_images(provider, old)
    if done:
        events.progress(f"deleted image(s) {', '.join(r['id'] for r in done)}, which the new one(s) replace")
    for ident, why in failed.items():
        log.warning("could not delete image %s, which a new one replaces (%s); `elasticcluster stop %s` "
                    "deletes it", ident, why, cluster.name)
    cluster.extra["old_images"] = [r for r in old if r["id"] in failed]
    cluster.save()


def _kind_groups(cluster: Cluster, kind: str) -> list[str] | None:
    """The Ansible groups the setup gives ``kind`` (None: no setup provider of ours)."""
    spec = getattr(cluster.setup_provider, "spec", None)
    return list(spec.groups.get(kind, [])) if spec is not None else None


def _base_image(cluster: Cluster, kind: str, node: Node) -> str | None:
    """The image the template gives ``kind`` (what a baked image of it replaces)."""
    spec = cluster.template_spec
    if spec is not None and kind in spec.kinds:
        return spec.kinds[kind].image_id
    current = cluster.images.get(kind)
    if current is not None:
        return current.get("base")
    return None if node.extra.get("baked") else node.image_id


def _usable_image(cluster: Cluster, kind: str) -> dict | None:
    """The baked image new ``kind`` nodes boot from: the kind's, unless the template's image_id
    for the kind changed since it was baked (then the template's wins)."""
    record = cluster.images.get(kind)
    if not record:
        return None
    spec = cluster.template_spec
    wanted = spec.kinds[kind].image_id if spec is not None and kind in spec.kinds else None
    if wanted is not None and record.get("base") not in (None, wanted):
        log.warning("the %s nodes' image_id changed to %s since image %s was baked from %s: new %s nodes "
                    "boot from %s (`elasticcluster bake %s` makes a new image)", kind,
                    spec.kinds[kind].image_id, record["id"], record.get("base"), kind,
                    spec.kinds[kind].image_id, cluster.name)
        return None
    return record


def _boot_from(record: dict, nodes: list[Node]) -> None:
    for node in nodes:
        node.image_id = record["id"]
        # what the image holds need not be set up again (a later setup may skip it)
        node.extra["baked"] = True


def _recorded_images(cluster: Cluster) -> list[dict]:
    return [*cluster.images.values(), *cluster.old_images]


def _image_ids(cluster: Cluster) -> set[str]:
    return {record["id"] for record in _recorded_images(cluster)}


def refresh(cluster: Cluster, *, events: Events | None = None) -> None:
    """States and addresses of the nodes from the cloud, saved (``list-nodes -u``)."""
    events = events or Events()
    provider = _cloud(cluster)
    with _changing(cluster, events):
        if any(not n.instance_id for n in cluster.get_all_nodes()):
            _resolve_missing(cluster, provider, events)  # one listing: it refreshes the others too
        else:
            lifecycle.refresh(provider, cluster)
            cluster.save()


# -- shared steps -----------------------------------------------------------------------------


@contextmanager
def _changing(cluster: Cluster, events: Events, question: str | None = None, *, stored: bool = True,
              advice: Callable[[], str] | None = None):
    """Ask ``question`` (if any), then hold the cluster's lock and re-read it from its
    repository: what another command saved meanwhile is not lost or undone.

    Ctrl-C and SIGTERM stop the operation the same way: the state is saved and Interrupted
    (exit status 130 or 143) says what exists and, from ``advice``, what to run next.
    """
    if question is not None and not events.confirm(question):
        raise Cancelled("cancelled: nothing was changed")
    with lifecycle.sigterm_as_interrupt(), cluster.repository.lock(cluster.name):
        try:
            try:
                current = cluster.repository.get(cluster.name)
            except ClusterNotFound:
                if stored:
                    raise
            else:
                if current is not cluster:
                    cluster.load_state(current)
            yield
        except KeyboardInterrupt as interrupt:
            with lifecycle.signals_deferred():
                if cluster.repository.exists(cluster.name):
                    cluster.save()
            raise Interrupted(_advised(lifecycle.what_exists(cluster), advice),
                              isinstance(interrupt, Terminated)) from None
        except Interrupted as err:
            err.args = (_advised(str(err), advice),)
            raise


def _advised(message: str, advice: Callable[[], str] | None) -> str:
    return f"{message}. {advice()}" if advice else message


def _reconcile(cluster: Cluster, provider, events: Events) -> None:
    """Before a started cluster changes: nodes its state records without an instance (a
    command was killed before the cloud answered its create call) get theirs, found by tag
    or client token, or are forgotten, saying so; nodes never seen to accept SSH are waited
    for (or dropped as ``KIND_min_nodes`` allows)."""
    if not cluster.extra.get("started"):
        return
    _resolve_missing(cluster, provider, events)
    unseen = [n for n in cluster.get_all_nodes() if n.instance_id and not n.extra.get("ssh_host_key")]
    if unseen:
        _create(cluster, provider, [], None, events, waiting=unseen)


def _unsettled(cluster: Cluster) -> bool:
    """Whether a node has no instance, or was never seen to accept SSH (``_reconcile``)."""
    return cluster.extra.get("started") and any(
        not n.instance_id or not n.extra.get("ssh_host_key") for n in cluster.get_all_nodes())


def _resolve_missing(cluster: Cluster, provider, events: Events) -> None:
    """Nodes without an instance: adopt theirs from the cloud's tags, or forget them."""
    missing = [n for n in cluster.get_all_nodes() if not n.instance_id]
    if not missing:
        return
    lifecycle.refresh(provider, cluster)
    for node in missing:
        if node.instance_id:
            events.progress(f"{node.name}: found its instance {node.instance_id}")
        else:
            log.warning("%s was never created (its create call failed, or its command was "
                        "interrupted before the cloud answered): forgotten", node.name)
            cluster.remove_node(node)
    cluster.save()


def _cloud(cluster: Cluster):
    """The cluster's cloud provider, scoped to its name (its tags, its instance names)."""
    provider = cluster.cloud_provider
    if provider is None:
        raise ElasticClusterError(f"cluster '{cluster.name}' has no cloud provider: load it with "
                                  "Configurator.load_cluster, or give Cluster() a cloud_provider")
    return provider.for_cluster(cluster.name)


def _setting(cluster: Cluster, key: str, default):
    """A setting of the cluster's template section (startup_timeout, ...), else ``default``."""
    spec = cluster.template_spec
    value = spec.cluster.get(key) if spec is not None else None
    return default if value is None else value


model.use_operations(sys.modules[__name__])
