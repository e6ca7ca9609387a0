"""Commands that only read: list-templates, list, list-nodes (seed 4.3.3-4.3.5)."""
from __future__ import annotations

import fnmatch
import logging

from elasticcluster.cli import render, session
from elasticcluster.exceptions import ConfigurationError

log = logging.getLogger("elasticcluster")


def register(subparsers, common) -> None:
    p = subparsers.add_parser("list-templates", parents=[common],
                              help="show the cluster templates of the configuration")
    p.add_argument("clusters", nargs="*", metavar="GLOB",
                   help="show only templates whose name matches one of these patterns (e.g. '*slurm*')")
    p.add_argument("--json", action="store_true", help="print JSON (see README: JSON output)")
    p.set_defaults(func=list_templates)

    p = subparsers.add_parser("list", parents=[common], help="show the started clusters")
    p.add_argument("--json", action="store_true", help="print JSON (see README: JSON output)")
    p.set_defaults(func=list_clusters)

    p = subparsers.add_parser("list-nodes", parents=[common], help="show the nodes of a started cluster")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("-u", "--update", action="store_true",
                   help="ask the cloud for up-to-date states and addresses first")
    p.add_argument("--json", action="store_true", help="print JSON (see README: JSON output)")
    p.set_defaults(func=list_nodes)


def list_templates(args) -> int:
    session.ensure_config(args)
    from elasticcluster.template_cache import template_report

    report = template_report(args.config_path)
    report.replay_warnings()
    templates = report.templates
    skipped = report.skipped
    if args.clusters:
        def wanted(name):
            return any(fnmatch.fnmatchcase(name, p) for p in args.clusters)
        templates = [t for t in templates if wanted(t["name"])]
        skipped = {n: p for n, p in skipped.items() if wanted(n)}
    if args.json:
        render.print_json({"templates": templates,
                           "skipped": [{"name": n, "problems": p} for n, p in sorted(skipped.items())]})
    else:
        render.print_templates(templates)
    if not report.templates and report.skipped:
        raise ConfigurationError(
            f"no valid cluster template in {args.config_path}: every one has errors (see above)")
    return 0


def list_clusters(args) -> int:
    clusters, unreadable = session.repository(args).load_all()
    rows = [{"name": c.name, "template": c.template, "cloud": c.cloud, "provider": c.provider,
             "nodes": c.node_counts()} for c in clusters]
    if args.json:
        render.print_json({"clusters": rows, "unreadable": [
            {"name": u.name, "path": u.path, "reason": u.reason} for u in unreadable]})
    else:
        render.print_clusters(rows)
    for bad in unreadable:
        log.error("cluster '%s': state file %s %s", bad.name, bad.path, bad.reason)
    return 2 if unreadable else 0


def list_nodes(args) -> int:
    if args.update:
        from elasticcluster import operations

        cluster = session.configurator(args).load_cluster(args.cluster)
        operations.refresh(cluster, events=session.events(args))
    else:
        cluster = session.repository(args).get(args.cluster)
    try:
        frontend = cluster.get_frontend_node().name
    except Exception:  # a cluster with no nodes left still lists
        frontend = None
    nodes = [{
        "name": n.name, "kind": n.kind, "state": n.state, "instance_id": n.instance_id,
        "public_ips": n.public_ips, "private_ips": n.private_ips, "preferred_ip": n.preferred_ip,
        "flavor": n.flavor, "image_id": n.image_id, "security_group": n.security_group,
    } for n in cluster.get_all_nodes()]
    images = {kind: {key: record.get(key) for key in ("id", "name", "from", "made")}
              for kind, record in sorted(cluster.images.items())}
    info = {"name": cluster.name, "template": cluster.template, "cloud": cluster.cloud,
            "provider": cluster.provider, "frontend": frontend, "nodes": nodes, "images": images}
    if args.json:
        render.print_json({"cluster": info})
        return 0
    by_kind: dict[str, list] = {}
    for node in nodes:
        by_kind.setdefault(node["kind"], []).append(node)
    render.print_cluster_nodes({**info, "nodes_by_kind": by_kind}, session.command_prefix(args))
    return 0
