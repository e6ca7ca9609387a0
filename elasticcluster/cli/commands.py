"""start, stop, resize, remove-node, pause, resume: the cloud lifecycle from the command line.

Each command loads the configuration, holds the cluster's lock while it
changes the cluster, and leaves a state file that ``stop`` can always use.
Heavy modules (libcloud) are imported inside the functions.
"""
from __future__ import annotations

import logging
import sys

from elasticcluster.exceptions import (
    CloudError,
    ClusterExists,
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
    """Create ``nodes``, wait until they run and accept SSH (lifecycle.provision)."""
    from elasticcluster import lifecycle

    if not nodes:
        return
    lifecycle.provision(provider, cluster, nodes, public_key=_public_key(cluster),
                        max_workers=_workers(args, template),
                        startup_timeout=template.cluster.get("startup_timeout", 600),
                        ssh_probe_timeout=template.cluster.get("ssh_probe_timeout", 5),
                        floating_ip=bool(provider.cloud.get("request_floating_ip")),
                        progress=_progress(args))


def _workers_default(template) -> int:
    return int(template.cluster.get("thread_pool_max_size", 10))


def run_setup(args, cluster, template, extra_args=()) -> None:
    """Run the setup playbook on ``cluster``; one clear error naming each failed host."""
    from elasticcluster import playbook
    from elasticcluster.cli.progress import listener_for

    listener = listener_for([n.name for n in cluster.get_all_nodes()], args.verbose)
    run = playbook.run_playbook(cluster, template, extra_args=list(extra_args), verbosity=args.verbose,
                                listener=listener)
    if run.returncode != 0:
        report = playbook.failure_report(run) or f"ansible-playbook exited with status {run.returncode}"
        where = f"; Ansible's output: {run.log_path}" if args.verbose < 1 else ""
        raise playbook.SetupFailed(f"setup of cluster '{cluster.name}' failed:\n  "
                                   + report.replace("\n", "\n  ") + where
                                   + f"\nFix it and run `elasticcluster setup {cluster.name}` again")


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
        if not args.no_setup:
            run_setup(args, cluster, template)
    _print_summary(args, cluster)
    if args.no_setup:
        print(f"The nodes run and accept SSH; --no-setup: run `elasticcluster setup {cluster.name}` "
              "to configure them.", file=sys.stderr)
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


def setup(args) -> int:
    config = load_config(args)
    repo = repository(args)
    cluster = repo.get(args.cluster)
    template = _template_of(config, cluster)
    extra = list(args.extra)
    with repo.lock(cluster.name):
        cluster = repo.get(args.cluster)
        run_setup(args, cluster, template, extra)
    print(f"Cluster '{cluster.name}' is set up.", file=sys.stderr)
    return 0


def connect(args) -> int:
    """``ssh`` and ``sftp``: exec the system program with the cluster's key, known_hosts and jump host."""
    import os

    from elasticcluster import ssh

    cluster = repository(args).get(args.cluster)
    node = cluster.get_node_by_name(args.node) if args.node else cluster.get_frontend_node()
    if not node.extra.get("ssh_host_key") or not ssh.known_hosts_path(cluster).exists():
        raise CloudError(f"{node.name}: elasticcluster has not connected to it yet, so its host key is "
                         f"unknown; run `elasticcluster setup {cluster.name}` (or start) first")
    if not ssh.address_of(node):
        raise CloudError(f"{node.name} has no IP address; run `elasticcluster list-nodes -u {cluster.name}`")
    extra = list(args.extra)
    argv = ssh.ssh_command(cluster, node, extra, program=args.command)
    log.debug("running %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise ElasticClusterError(f"the `{argv[0]}` program is not installed "
                                  "(apt-get install -y openssh-client)") from None


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
        if (added or removing) and not args.no_setup:
            run_setup(args, cluster, template)
    print(f"Cluster '{cluster.name}' now has: "
          + ", ".join(f"{n} {k}" for k, n in cluster.node_counts().items()), file=sys.stderr)
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
        # the other nodes forget it too: /etc/hosts, the scheduler's node list
        if not args.no_setup:
            run_setup(args, cluster, _template_of(config, cluster))
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
