"""The argument parsers of the commands that change or reach clusters (seed 4.3).

They run in ``commands``: start, stop, resize, remove-node, pause, resume,
setup, bake, ssh and sftp.
"""
from __future__ import annotations

import argparse

from elasticcluster.cli import commands
from elasticcluster.exceptions import UsageError


def node_counts(text: str) -> dict[str, int]:
    """Parse ``N1:KIND1[,N2:KIND2,...]`` (``--nodes``, ``-a``, ``-r``) for argparse."""
    from elasticcluster.cluster import parse_node_counts  # the model only when a count is given

    try:
        return parse_node_counts(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers, common) -> None:
    p = subparsers.add_parser("start", parents=[common], help="create a cluster from a template")
    p.add_argument("cluster", help="name of a [cluster/NAME] template")
    p.add_argument("-n", "--name", dest="cluster_name", metavar="CLUSTER_NAME",
                   help="name of the new cluster (default: the template's name)")
    p.add_argument("--nodes", type=node_counts, metavar="N1:KIND1[,N2:KIND2,...]",
                   help="start these numbers of nodes instead of the template's")
    p.add_argument("--no-setup", action="store_true", help="do not run the setup step")
    p.add_argument("-p", "--max-concurrent-requests", type=int, metavar="N",
                   help="create at most N nodes at the same time (default: thread_pool_max_size, 10)")
    p.set_defaults(func=commands.start)

    p = subparsers.add_parser("stop", parents=[common], help="terminate a cluster's nodes and forget it")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("--force", action="store_true", help="carry on past errors and remove the state anyway")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--wait", action="store_true", help="wait until every node is terminated")
    p.add_argument("--cloud", metavar="CLOUD",
                   help="with --force: terminate what cloud section CLOUD tags as this cluster's, even "
                        "when its state file cannot be read or is gone")
    p.add_argument("--keep-images", action="store_true",
                   help="keep the cluster's baked images (and print their ids): a new cluster started "
                        "under this name boots from them, a template may name one as image_id")
    p.set_defaults(func=commands.stop)

    p = subparsers.add_parser("bake", parents=[common],
                              help="make an image of a set-up node of each kind, for new nodes to boot from")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("--kind", action="append", metavar="KIND",
                   help="bake only this kind of node (repeat for more; default: every kind)")
    p.set_defaults(func=commands.bake)

    p = subparsers.add_parser("resize", parents=[common], help="add or remove nodes")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("-a", "--add", type=node_counts, metavar="N1:KIND1[,N2:KIND2]", help="nodes to add")
    p.add_argument("-r", "--remove", type=node_counts, metavar="N1:KIND1[,N2:KIND2]",
                   help="nodes to remove")
    p.add_argument("--no-setup", action="store_true", help="do not run the setup step afterwards")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("-p", "--max-concurrent-requests", type=int, metavar="N",
                   help="create at most N nodes at the same time")
    p.set_defaults(func=commands.resize)

    p = subparsers.add_parser("remove-node", parents=[common],
                              help="terminate one node of a cluster, then set the others up again")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("node", help="name of the node, e.g. compute002")
    p.add_argument("--no-setup", action="store_true", help="do not run the setup step afterwards")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=commands.remove_node)

    for name, text in (("pause", "stop a cluster's nodes without terminating them"),
                       ("resume", "start the nodes of a paused cluster again")):
        p = subparsers.add_parser(name, parents=[common], help=text)
        p.add_argument("cluster", help="name of a started cluster")
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=getattr(commands, name))

    p = subparsers.add_parser("autoscale", parents=[common],
                              help="make and remove the autoscaled nodes as SLURM's power saving asks")
    p.add_argument("cluster", help="name of a started cluster with an autoscaled kind (KIND_nodes_max)")
    p.add_argument("--once", action="store_true", help="one round, then exit (for cron or a systemd timer)")
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                   help="how often to look at SLURM (default: 5)")
    p.set_defaults(func=commands.autoscale)

    p = subparsers.add_parser("setup", parents=[common], help="run Ansible on a cluster again",
                              usage="%(prog)s [-h] [-v] [--full] cluster [-- ANSIBLE_PLAYBOOK_ARGS...]")
    p.add_argument("cluster", help="name of a started cluster")
    p.add_argument("--full", action="store_true",
                   help="run the whole playbook, even if nothing it manages changed since the last "
                        "whole setup")
    p.set_defaults(func=commands.setup, takes_extra="-- ANSIBLE_PLAYBOOK_ARGS")

    for name, text in (("ssh", "connect to the frontend (or -n NODE) with ssh"),
                       ("sftp", "open an SFTP session to the frontend (or -n NODE)")):
        p = subparsers.add_parser(name, parents=[common], help=text,
                                  usage=f"%(prog)s [-h] [-v] [-n NODE] cluster [-- {name.upper()}_ARGS...]")
        p.add_argument("cluster", help="name of a started cluster")
        p.add_argument("-n", "--node", metavar="NODE", help="connect to this node instead of the frontend")
        p.set_defaults(func=commands.connect, takes_extra=f"-- {name.upper()}_ARGS")
