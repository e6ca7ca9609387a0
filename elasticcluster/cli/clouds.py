"""list-clouds: every libcloud compute provider, whether elasticcluster reaches it and how."""
from __future__ import annotations

import fnmatch
import sys

from elasticcluster.cli import render


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "list-clouds", parents=[common],
        help="show every libcloud compute provider: mapped, reachable by configuration alone, "
             "and how the SSH key reaches its nodes")
    p.add_argument("providers", nargs="*", metavar="GLOB",
                   help="show only providers whose name matches one of these patterns (e.g. 'digital*')")
    p.add_argument("--json", action="store_true", help="print JSON (see README: JSON output)")
    p.set_defaults(func=list_clouds)


def list_clouds(args) -> int:
    from elasticcluster import cloud_reach

    names = cloud_reach.provider_names()
    reaches = [cloud_reach.reach(name) for name in names]
    figures = cloud_reach.summary(reaches)
    if args.providers:
        reaches = [r for r in reaches if any(fnmatch.fnmatchcase(r.provider, p) for p in args.providers)]
    if args.json:
        import libcloud

        render.print_json({"libcloud": libcloud.__version__, "summary": figures,
                           "providers": [r.to_json() for r in reaches]})
        return 0
    if render.on_terminal():
        _table(reaches, figures)
    else:
        _plain(reaches, figures)
    return 0


def _headline(figures: dict) -> str:
    return (f"{figures['reachable']} of libcloud's {figures['libcloud_providers']} compute providers are "
            f"reachable by configuration alone ({figures['mapped']} with a mapping file in drivers/; "
            f"{figures['unmapped_reachable']} of the {figures['unmapped']} without one)")


def _plain(reaches, figures) -> None:
    out = [_headline(figures)]
    for r in reaches:
        out += ["", f"provider:  {r.provider}",
                f"mapped:    {r.mapped or 'no (pass-through: the section holds the constructor arguments)'}",
                f"driver:    {r.driver or '-'}",
                f"reachable: {'yes' if r.reachable else 'no: ' + '; '.join(r.why)}",
                f"ssh key:   {r.ssh_key}",
                f"location:  {r.location}"]
        if r.mapped is None and r.driver:
            out.append(f"cloud keys: required {', '.join(r.required) or 'none'}; "
                       f"optional {', '.join(r.optional) or 'none'}")
        if r.needs:
            out.append(f"cluster keys needed: {', '.join(r.needs)}")
    sys.stdout.write("\n".join(out) + "\n")


def _table(reaches, figures) -> None:
    from rich.table import Table

    table = Table(title=_headline(figures), title_justify="left")
    for column in ("provider", "mapped", "reachable", "ssh key", "location", "cloud keys (required)"):
        table.add_column(column, overflow="fold")
    for r in reaches:
        table.add_row(r.provider, r.mapped or "-", "yes" if r.reachable else "no: " + "; ".join(r.why),
                      r.ssh_key, r.location, ", ".join(r.required) or "-")
    render._console().print(table)
