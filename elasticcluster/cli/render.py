"""Output of the report commands.

On a terminal, rich tables and colour; piped, the plain ``key: value`` blocks
of the seed (stable, and quick: rich is not even imported); with ``--json``,
the documented JSON (README: "JSON output").
"""
from __future__ import annotations

import json
import sys

JSON_FORMAT = 1


def on_terminal() -> bool:
    return sys.stdout.isatty()


def _console():
    from rich.console import Console

    return Console()


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps({"format": JSON_FORMAT, **data}, indent=2, sort_keys=True) + "\n")


def _counts_lines(nodes: dict[str, int], indent: str = "") -> list[str]:
    return [f"{indent}- {kind} nodes: {count}" for kind, count in sorted(nodes.items())]


def print_templates(templates: list[dict]) -> None:
    noun = "template" if len(templates) == 1 else "templates"
    if on_terminal():
        from rich.table import Table

        table = Table(title=f"{len(templates)} cluster {noun} found", title_justify="left")
        for column in ("name", "cloud", "provider", "setup", "nodes", "frontend"):
            table.add_column(column, overflow="fold")
        for t in templates:
            nodes = ", ".join(f"{n}{_up_to(t, kind)} {kind}" for kind, n in sorted(t["nodes"].items()))
            table.add_row(t["name"], t["cloud"], t["provider"], t["setup"], nodes, t["frontend"])
        _console().print(table)
        return
    out = [f"{len(templates)} cluster {noun} found."]
    for t in templates:
        out += ["", f"name:     {t['name']}", f"cloud:    {t['cloud']}", f"provider: {t['provider']}",
                f"setup:    {t['setup']}"]
        out += [f"{kind} nodes: {count}{_up_to(t, kind)}" for kind, count in sorted(t["nodes"].items())]
    sys.stdout.write("\n".join(out) + "\n")


def _up_to(template: dict, kind: str) -> str:
    top = (template.get("nodes_max") or {}).get(kind)
    return f" (autoscaled up to {top})" if top else ""


def print_clusters(clusters: list[dict]) -> None:
    if not clusters:
        sys.stdout.write("No clusters found.\n")
        return
    if on_terminal():
        from rich.table import Table

        table = Table(title="Started clusters (there is no guarantee that they are fully configured)",
                      title_justify="left")
        for column in ("name", "template", "cloud", "nodes"):
            table.add_column(column, overflow="fold")
        for c in clusters:
            nodes = ", ".join(f"{n} {kind}" for kind, n in sorted(c["nodes"].items()))
            table.add_row(c["name"], c["template"] or "-", c["cloud"] or "-", nodes or "-")
        _console().print(table)
        return
    out = ["The following clusters have been started.",
           "Please note that there's no guarantee that they are fully configured:"]
    for c in clusters:
        out += ["", c["name"], "-" * len(c["name"]), f"name:          {c['name']}",
                f"template:      {c['template'] or '-'}", f"cloud:         {c['cloud'] or '-'}"]
        out += _counts_lines(c["nodes"])
    sys.stdout.write("\n".join(out) + "\n")


def print_cluster_nodes(info: dict, command_prefix: str) -> None:
    """``list-nodes``: the cluster summary, how to connect, then every node."""
    head = [
        f"Cluster name:      {info['name']}",
        f"Cluster template:  {info['template'] or '-'}",
        f"Frontend node:     {info['frontend'] or '-'}",
        *_counts_lines({k: len(v) for k, v in info["nodes_by_kind"].items()}),
        *[f"- {kind} image:     {image['id']} (baked from {image['from']})"
          for kind, image in sorted((info.get("images") or {}).items())],
        "",
        "To login on the frontend node, run the command:",
        "",
        f"    {command_prefix} ssh {info['name']}",
        "",
        "To upload or download files to the cluster, use the command:",
        "",
        f"    {command_prefix} sftp {info['name']}",
    ]
    if on_terminal():
        from rich.table import Table
        from rich.text import Text

        console = _console()
        console.print(Text("\n".join(head)))
        table = Table(title_justify="left")
        for column in ("node", "kind", "state", "public IP", "private IP", "instance id", "flavor"):
            table.add_column(column, overflow="fold")
        for node in info["nodes"]:
            table.add_row(node["name"], node["kind"], node["state"], ", ".join(node["public_ips"]) or "-",
                          ", ".join(node["private_ips"]) or "-", node["instance_id"] or "-", node["flavor"])
        console.print(table)
        return
    out = list(head)
    for kind, nodes in sorted(info["nodes_by_kind"].items()):
        out += ["", f"{kind} nodes:", ""]
        for node in nodes:
            out += [f"- {node['name']}",
                    f"  public IP:   {', '.join(node['public_ips']) or '-'}",
                    f"  private IP:  {', '.join(node['private_ips']) or '-'}",
                    f"  instance id: {node['instance_id'] or '-'}",
                    f"  instance flavor: {node['flavor']}",
                    f"  state:       {node['state']}"]
    sys.stdout.write("\n".join(out) + "\n")
