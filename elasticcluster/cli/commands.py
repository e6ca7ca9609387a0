"""start, stop, resize, remove-node, pause, resume: the cloud lifecycle from the command line.

Each command loads the configuration, holds the cluster's lock while it
changes the cluster, and leaves a state file that ``stop`` can always use.
Heavy modules (libcloud) are imported inside the functions.
"""
from __future__ import annotations

import logging
import sys

from elasticcluster.exceptions import (
    ClusterExists,
    CloudError,
    ConfigurationError,
    ElasticClusterError,
    UsageError,
)

log = logging.getLogger("elasticcluster")


# -- shared steps -----------------------------------------------------------------


def load_config(args):
    from elasticcluster.cli.reports import ensure_config
    from elasticcluster.config import load_config as load
    from elasticcluster.redact import register_secrets

    ensure_config(args)
    config = load(args.config_path)
    register_secrets(config.secrets)
    return config


def repository(args):
    from elasticcluster.repository import DiskRepository

    return DiskRepository(args.storage_path)


def open_provider(config, cluster):
    from elasticcluster.cloud import provider_for

    return provider_for(config, cluster.cloud, cluster.name)


def confirm(args, question: str) -> None:
    """Ask ``question`` unless --yes; refuse when nobody can answer."""
    if getattr(args, "yes", False):
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Nobody can answer on this input: add --yes to go ahead")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise ElasticClusterError("cancelled: nothing was changed")


def _progress(args):
    from elasticcluster.lifecycle import Progress

    def event(message: str) -> None:
        if args.verbose >= 1:
            log.info("%s", message)
        else:
            print(message, file=sys.stderr, flush=True)

    return Progress(event=event)


def _workers(args, template) -> int:
    if args.verbose >= 4:
        return 1
    return args.max_concurrent_requests or template.cluster.get("thread_pool_max_size", 10)


def _public_key(cluster) -> str:
    from elasticcluster.ssh_keys import ensure_key_pair, read_public_key

    if ensure_key_pair(cluster.user_key_private, cluster.user_key_public):
        log.warning("made a new SSH key pair for elasticcluster: %s", cluster.user_key_private)
    return read_public_key(cluster.user_key_public)


def create_nodes(args, config, template, cluster, nodes, provider) -> None:
    """prepare -> run_instances -> min_nodes -> wait_instances -> startup timeout (one path)."""
    from elasticcluster import lifecycle

    if not nodes:
        return
    progress = _progress(args)
    public_key = _public_key(cluster)
    lifecycle.prepare(provider, cluster, nodes, public_key)
    progress.event(f"creating {len(nodes)} node(s) of cluster '{cluster.name}'")
    outcome = lifecycle.run_instances(provider, cluster, nodes, public_key=public_key,
                                      max_workers=_workers(args, template), progress=progress)
    minimums = dict(cluster.extra.get("min_nodes") or {})
    lifecycle.check_min_nodes(cluster, outcome, minimums)
    created = [n for n in nodes if n in cluster.get_all_nodes()]
    timeout = template.cluster.get("startup_timeout", 600)
    late = lifecycle.wait_instances(provider, cluster, created, timeout=timeout,
                                    floating_ip=bool(provider.cloud.get("request_floating_ip")),
                                    progress=progress)
    lifecycle.handle_timeout(provider, cluster, late, minimums, timeout)


def _template_of(config, cluster):
    if not cluster.template:
        raise ConfigurationError(f"cluster '{cluster.name}' does not record its template")
    return config.template(cluster.template)


# -- commands ---------------------------------------------------------------------


def start(args) -> int:
    from elasticcluster.conf import Configurator

    config = load_config(args)
    template = config.template(args.cluster)
    if args.nodes:
        template = template.with_node_counts(args.nodes)
    name = args.cluster_name or args.cluster
    repo = repository(args)
    with repo.lock(name):
        try:
            cluster = Configurator(config, args.storage_path, repo).create_cluster(
                args.cluster, name, node_counts=args.nodes)
        except ClusterExists:
            cluster = repo.get(name)
            if cluster.extra.get("started") or cluster.template != args.cluster:
                raise
            log.warning("cluster '%s' was interrupted while starting: resuming it", name)
        provider = open_provider(config, cluster)
        if cluster.extra.get("started") is None:
            cluster.extra["started"] = False
            cluster.save()
        from elasticcluster import lifecycle

        try:
            lifecycle.refresh(provider, cluster)
            todo = _creation_order(cluster, [n for n in cluster.get_all_nodes() if not n.instance_id])
            create_nodes(args, config, template, cluster, todo, provider)
        except ElasticClusterError as err:
            _after_failed_start(repo, cluster, err)
            raise
        cluster.extra["started"] = True
        cluster.save()
    _print_summary(args, cluster)
    print("The nodes are running. Waiting for SSH and running the setup step are not available "
          "yet in this version: the cluster is not configured.", file=sys.stderr)
    return 0


def _creation_order(cluster, nodes):
    """The frontend kind (ssh_to) first: if the cloud runs out of room, it has what matters most."""
    return sorted(nodes, key=lambda n: (n.kind != cluster.ssh_to, n.kind, n.name))


def _after_failed_start(repo, cluster, err) -> None:
    """Forget a cluster that has nothing on the cloud; otherwise say how to go on."""
    from elasticcluster.exceptions import Interrupted

    if isinstance(err, Interrupted):
        return
    if not any(n.instance_id for n in cluster.get_all_nodes()):
        repo.delete(cluster)
        return
    err.args = (f"{err}\nThe nodes created are recorded: run `elasticcluster start {cluster.template} "
                f"-n {cluster.name}` to try again, or `elasticcluster stop {cluster.name}`",)


def _print_summary(args, cluster) -> None:
    from elasticcluster.cli.reports import _command_prefix

    prefix = _command_prefix(args)
    try:
        frontend = cluster.get_frontend_node().name
    except ElasticClusterError:
        frontend = "-"
    lines = [f"Cluster name:      {cluster.name}", f"Cluster template:  {cluster.template}",
             f"Frontend node:     {frontend}"]
    lines += [f"- {kind} nodes: {count}" for kind, count in cluster.node_counts().items()]
    lines += ["", "To login on the frontend node, run the command:", "",
              f"    {prefix} ssh {cluster.name}", "",
              "To upload or download files to the cluster, use the command:", "",
              f"    {prefix} sftp {cluster.name}"]
    print("\n".join(lines))


def stop(args) -> int:
    from elasticcluster import lifecycle

    repo = repository(args)
    cluster = repo.get(args.cluster)
    confirm(args, f"Do you want to stop cluster '{cluster.name}' and terminate its "
                  f"{len(cluster.get_all_nodes())} node(s)?")
    with repo.lock(cluster.name):
        cluster = repo.get(args.cluster)
        try:
            config = load_config(args)
            provider = open_provider(config, cluster)
            outcome = lifecycle.terminate_instances(provider, cluster, force=args.force)
        except ElasticClusterError as err:
            if not args.force:
                raise
            ids = [n.instance_id for n in cluster.get_all_nodes() if n.instance_id]
            log.error("%s", err)
            log.warning("--force: forgetting cluster '%s' although its instances could not be "
                        "terminated: %s (they are tagged %s=%s on the cloud)", cluster.name,
                        ", ".join(ids) or "none recorded", "elasticcluster-cluster", cluster.name)
            repo.delete(cluster)
            return 1
        if outcome.failed:
            message = "; ".join(f"{name}: {why}" for name, why in outcome.failed.items())
            if not args.force:
                for node in outcome.done:
                    if node in cluster.get_all_nodes():
                        cluster.remove_node(node)
                cluster.save()
                raise CloudError(f"could not terminate every node of '{cluster.name}' ({message}); "
                                 "the state file keeps them: run stop again, or add --force")
            log.warning("--force: carrying on past: %s", message)
        if args.wait and not lifecycle.wait_terminated(provider, cluster):
            log.warning("some instances of '%s' are still shutting down", cluster.name)
        repo.delete(cluster)
    print(f"Cluster '{cluster.name}' stopped.", file=sys.stderr)
    return 0


def resize(args) -> int:
    from elasticcluster import lifecycle

    if not args.add and not args.remove:
        raise UsageError("resize: give -a N:KIND to add nodes and/or -r N:KIND to remove nodes")
    config = load_config(args)
    repo = repository(args)
    cluster = repo.get(args.cluster)
    template = _template_of(config, cluster)
    removing = _nodes_to_remove(cluster, args.remove or {})
    if removing:
        confirm(args, f"Remove {', '.join(n.name for n in removing)} from cluster '{cluster.name}'? "
                      "Jobs running on them are lost.")
    with repo.lock(cluster.name):
        cluster = repo.get(args.cluster)
        removing = _nodes_to_remove(cluster, args.remove or {})
        provider = open_provider(config, cluster)
        if removing:
            _remove(provider, cluster, removing, lifecycle)
        added = []
        for kind, count in (args.add or {}).items():
            added += _add_nodes(cluster, template, kind, count)
        if added:
            cluster.save()
            create_nodes(args, config, template, cluster, added, provider)
    print(f"Cluster '{cluster.name}' now has: "
          + ", ".join(f"{n} {k}" for k, n in cluster.node_counts().items()), file=sys.stderr)
    if added and not args.no_setup:
        print("The setup step is not available yet in this version: the new nodes are not "
              "configured.", file=sys.stderr)
    return 0


def _nodes_to_remove(cluster, counts: dict[str, int]):
    chosen = []
    for kind, count in counts.items():
        nodes = cluster.nodes.get(kind, [])
        if count > len(nodes):
            raise UsageError(f"resize -r {count}:{kind}: cluster '{cluster.name}' has "
                             f"{len(nodes)} {kind} node(s)")
        chosen += sorted(nodes, key=lambda n: n.name)[len(nodes) - count:]
    return chosen


def _add_nodes(cluster, template, kind: str, count: int):
    spec = template.kinds.get(kind)
    if spec is None:
        raise UsageError(f"resize -a {count}:{kind}: template '{template.name}' has no node kind "
                         f"'{kind}'; its kinds are: {', '.join(sorted(template.kinds))}")
    extra = dict(spec.extra)
    image_user = extra.pop("image_user", None) or template.logins[spec.login]["image_user"]
    return cluster.add_nodes(kind, count, spec.image_id, image_user, spec.flavor, spec.security_group,
                             spec.image_userdata, network_ids=list(spec.network_ids), login=spec.login,
                             **extra)


def _remove(provider, cluster, nodes, lifecycle) -> None:
    outcome = lifecycle.terminate_instances(provider, cluster, nodes, lost=False)
    for node in outcome.done:
        cluster.remove_node(node)
    cluster.save()
    if outcome.failed:
        raise CloudError("could not terminate: " + "; ".join(f"{n}: {w}" for n, w in outcome.failed.items()))


def remove_node(args) -> int:
    from elasticcluster import lifecycle

    config = load_config(args)
    repo = repository(args)
    cluster = repo.get(args.cluster)
    node = cluster.get_node_by_name(args.node)
    confirm(args, f"Remove node {node.name} ({node.instance_id or 'no instance'}) from cluster "
                  f"'{cluster.name}'?")
    with repo.lock(cluster.name):
        cluster = repo.get(args.cluster)
        node = cluster.get_node_by_name(args.node)
        _remove(open_provider(config, cluster), cluster, [node], lifecycle)
    print(f"Node {args.node} removed from cluster '{cluster.name}'.", file=sys.stderr)
    return 0


def pause(args) -> int:
    return _pause_or_resume(args, "pause")


def resume(args) -> int:
    return _pause_or_resume(args, "resume")


def _pause_or_resume(args, verb: str) -> int:
    from elasticcluster import lifecycle

    config = load_config(args)
    repo = repository(args)
    cluster = repo.get(args.cluster)
    if verb == "pause":
        confirm(args, f"Pause cluster '{cluster.name}' (stop its nodes; disks are kept)?")
    with repo.lock(cluster.name):
        cluster = repo.get(args.cluster)
        provider = open_provider(config, cluster)
        if verb == "pause":
            outcome = lifecycle.stop_instances(provider, cluster)
        else:
            outcome = lifecycle.start_instances(provider, cluster)
            template = _template_of(config, cluster)
            late = lifecycle.wait_instances(provider, cluster, outcome.done,
                                            timeout=template.cluster.get("startup_timeout", 600),
                                            progress=_progress(args))
            for node in late:
                outcome.failed[node.name] = "not running in time"
        if outcome.failed:
            raise CloudError(f"could not {verb} every node of '{cluster.name}': " + "; ".join(
                f"{n}: {w}" for n, w in outcome.failed.items()))
    print(f"Cluster '{cluster.name}' {'paused' if verb == 'pause' else 'resumed'}.", file=sys.stderr)
    return 0


def refresh(args, cluster) -> None:
    """``list-nodes -u``: states and addresses from the cloud, saved."""
    from elasticcluster import lifecycle

    config = load_config(args)
    with cluster.repository.lock(cluster.name):
        provider = open_provider(config, cluster)
        lifecycle.refresh(provider, cluster)
        cluster.save()
