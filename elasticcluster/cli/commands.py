"""start, stop, resize, remove-node, pause, resume, setup, bake, ssh, sftp: the commands that
change or reach clusters.

Each parses what the user typed, runs the cluster operation
(``elasticcluster.operations``: the same ones the Python API runs, holding the
cluster's lock and its policy) with the CLI's callbacks, and prints the
result. Heavy modules (libcloud, Ansible) are imported by the operations
that need them.
"""
from __future__ import annotations

import logging
import sys

from elasticcluster.cli import session
from elasticcluster.exceptions import (
    CloudError,
    ConfigurationError,
    ElasticClusterError,
    StateFileError,
    UsageError,
)

log = logging.getLogger("elasticcluster")


def start(args) -> int:
    from elasticcluster import operations

    cluster = operations.launch(session.configurator(args), args.cluster, args.cluster_name, args.nodes,
                                setup=not args.no_setup, max_workers=session.max_workers(args),
                                events=session.events(args))
    _print_summary(args, cluster)
    if args.no_setup:
        print(f"The nodes run and accept SSH; --no-setup: run `elasticcluster setup {cluster.name}` "
              "to configure them.", file=sys.stderr)
    return 0


def _print_summary(args, cluster) -> None:
    prefix = session.command_prefix(args)
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
    from elasticcluster import operations

    if args.cloud and not args.force:
        raise UsageError("stop --cloud CLOUD goes with --force: it terminates by tag what the cloud "
                         "says is the cluster's, whatever its state file says")
    if args.cloud:
        operations.stop_by_tags(session.configurator(args), args.cluster, args.cloud,
                                events=session.events(args))
        return 0
    try:
        cluster = session.repository(args).get(args.cluster)
    except StateFileError as err:
        hint = "stop --force NAME --cloud CLOUD" if not args.force else "add --cloud CLOUD"
        raise StateFileError(err.path, f"{err.reason}\nTo terminate the instances the cloud tags as this "
                                       f"cluster's and forget it: {hint} (CLOUD: the name of its "
                                       "[cloud/CLOUD] section)") from None
    try:
        configurator = session.configurator(args)
    except ConfigurationError as err:
        if not args.force:
            raise
        log.error("%s", err)  # --force: the cluster may be forgotten all the same (operations.stop)
    else:
        cluster = configurator.load_cluster(args.cluster)
    kept = operations.stop(cluster, force=args.force, wait=args.wait, keep_images=args.keep_images,
                           events=session.events(args))
    if kept:
        template = cluster.template or "TEMPLATE"
        print("Images kept (`start " + template + f" -n {cluster.name}` boots from them again; a template "
              "may name one as image_id):")
        for kind, record in sorted(kept.items()):
            print(f"  {kind}: {record['id']}    (image_id = {record['id']} in [cluster/{template}/{kind}])")
    return 0


def bake(args) -> int:
    from elasticcluster import operations

    made = operations.bake(_loaded(args), kinds=args.kind, events=session.events(args))
    for kind, record in made.items():
        print(f"{kind}: {record['id']} (from {record['from']})")
    return 0


def _loaded(args):
    """The cluster named on the command line, with the configuration's providers."""
    return session.configurator(args).load_cluster(args.cluster)


def setup(args) -> int:
    from elasticcluster import operations

    operations.setup(_loaded(args), extra_args=list(args.extra), full=args.full, events=session.events(args))
    return 0


def resize(args) -> int:
    from elasticcluster import operations

    operations.resize(_loaded(args), add=args.add, remove=args.remove, setup=not args.no_setup,
                      max_workers=session.max_workers(args), events=session.events(args))
    return 0


def remove_node(args) -> int:
    from elasticcluster import operations

    operations.remove_node(_loaded(args), args.node, setup=not args.no_setup, events=session.events(args))
    return 0


def pause(args) -> int:
    from elasticcluster import operations

    operations.pause(_loaded(args), events=session.events(args))
    return 0


def resume(args) -> int:
    from elasticcluster import operations

    operations.resume(_loaded(args), events=session.events(args))
    return 0


def autoscale(args) -> int:
    from elasticcluster import autoscale as autoscaler
    from elasticcluster.cli.progress import autoscale_status

    if args.interval <= 0:
        raise UsageError("autoscale --interval: expected a number of seconds above 0")
    cluster = _loaded(args)
    with autoscale_status(cluster.name, args.once) as status:
        autoscaler.run(cluster, once=args.once, interval=args.interval, events=session.events(args),
                       status=status)
    return 0


def connect(args) -> int:
    """``ssh`` and ``sftp``: exec the system program with the cluster's key, known_hosts and jump host."""
    import os

    from elasticcluster import ssh

    cluster = session.repository(args).get(args.cluster)
    node = cluster.get_node_by_name(args.node) if args.node else cluster.get_frontend_node()
    if not node.extra.get("ssh_host_key") or not ssh.known_hosts_path(cluster).exists():
        raise CloudError(f"{node.name}: elasticcluster has not connected to it yet, so its host key is "
                         f"unknown; run `elasticcluster setup {cluster.name}` (or start) first")
    if not ssh.address_of(node):
        raise CloudError(f"{node.name} has no IP address; run `elasticcluster list-nodes -u {cluster.name}`")
    argv = ssh.ssh_command(cluster, node, list(args.extra), program=args.command)
    log.debug("running %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise ElasticClusterError(f"the `{argv[0]}` program is not installed "
                                  "(apt-get install -y openssh-client)") from None
