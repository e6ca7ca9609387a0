"""The Ansible inventory of a cluster (seed 4.2.4, 4.5.10).

Each node is in the groups its kind's ``KIND_groups`` lists; ``KIND_var_VAR``
become host variables of that kind's nodes and ``global_var_VAR`` variables of
all (they win over elasticcluster's connection defaults). The file is JSON,
which Ansible's YAML inventory plugin reads as it is, written with mode 0600
into the cluster's folder (``STORAGE/NAME/inventory.json``).
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from elasticcluster.cluster import Cluster
from elasticcluster.ssh import Login, address_of, known_hosts_path, proxy_command


@dataclass
class SetupSpec:
    """What a setup needs: the playbook, the Ansible groups and variables of each node kind,
    variables for all nodes and the setup section's own settings (``ansible_*``...)."""

    name: str | None = None
    playbook: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    kind_vars: dict[str, dict] = field(default_factory=dict)
    global_vars: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    #: how to become root (None: as the login section says)
    become: bool | None = None
    become_user: str | None = None
    #: autoscaled kinds: kind -> {"names": the nodes autoscale may add, "idle": seconds}
    elastic: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_template(cls, template) -> SetupSpec:
        return cls(name=template.setup_name, playbook=template.setup.get("playbook_path"),
                   groups={kind: list(spec.groups) for kind, spec in template.kinds.items()},
                   kind_vars={kind: dict(spec.vars) for kind, spec in template.kinds.items()},
                   global_vars=dict(template.global_vars), settings=dict(template.setup),
                   elastic={kind: {"names": spec.elastic_names, "idle": spec.idle}
                            for kind, spec in template.kinds.items() if spec.elastic_names})


def inventory_for(cluster: Cluster, spec: SetupSpec) -> dict:
    """The inventory of ``cluster``, grouped and configured as ``spec`` says."""
    login = Login.of(cluster)
    ssh_args = ["-o", f"UserKnownHostsFile={known_hosts_path(cluster)}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "CheckHostIP=no"]
    all_vars = {
        "ansible_user": login.user,
        "ansible_port": login.port,
        "ansible_ssh_private_key_file": login.private_key,
        "ansible_ssh_common_args": shlex.join(ssh_args),
        "ansible_become": login.become if spec.become is None else spec.become,
        "ansible_become_user": spec.become_user or login.become_user,
        "ansible_python_interpreter": "/usr/bin/python3",
        "elasticcluster_cluster": cluster.name,
        "elasticcluster_frontend": cluster.get_frontend_node().name if cluster.get_all_nodes() else None,
    }
    if spec.elastic:
        # what the scheduler declares of the nodes autoscale may add: names, groups, size
        sizes = cluster.extra.get("kind_sizes") or {}
        all_vars["elasticcluster_elastic"] = {
            kind: {**info, "groups": spec.groups.get(kind, []),
                   "cpus": (sizes.get(kind) or {}).get("cpus"),
                   "memory_mb": (sizes.get(kind) or {}).get("memory_mb")}
            for kind, info in spec.elastic.items()}
    all_vars.update(spec.global_vars)
    hosts, children = {}, {}
    for node in cluster.get_all_nodes():
        host = {"ansible_host": address_of(node), "elasticcluster_kind": node.kind,
                "elasticcluster_private_ip": (node.private_ips or node.ips or [None])[0]}
        for key, extra in (("elasticcluster_cpus", "flavor_cpus"),
                           ("elasticcluster_memory_mb", "flavor_ram")):
            if node.extra.get(extra):
                host[key] = node.extra[extra]
        if _baked(cluster, spec, node):
            host["elasticcluster_baked"] = True
        if node.image_user and node.image_user != login.user:
            host["ansible_user"] = node.image_user
        proxy = proxy_command(cluster, node)
        if proxy:
            host["ansible_ssh_common_args"] = shlex.join([*ssh_args, "-o", f"ProxyCommand={proxy}"])
        host.update(spec.kind_vars.get(node.kind, {}))
        for group in spec.groups.get(node.kind, []):
            children.setdefault(group, {"hosts": {}})["hosts"][node.name] = None
        hosts[node.name] = host
    return {"all": {"vars": all_vars, "hosts": hosts, "children": children}}


def _baked(cluster: Cluster, spec: SetupSpec, node) -> bool:
    """``node`` booted from an image baked of its kind with the Ansible groups it has now: its
    software is installed (the playbooks' install tasks skip it). An image baked before the
    kind's groups changed holds the software of the old groups only: such a node installs."""
    if not node.extra.get("baked"):
        return False
    records = [*cluster.images.values(), *cluster.old_images]
    record = next((r for r in records if r.get("id") == node.image_id), None)
    return record is not None and record.get("groups") == spec.groups.get(node.kind, [])


def write_inventory(cluster: Cluster, spec: SetupSpec) -> Path:
    """Write the inventory into the cluster's folder (mode 0600) and return its path."""
    path = cluster.files.ensure().inventory
    data = inventory_for(cluster, spec)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".inventory.", suffix=".tmp")
    with os.fdopen(fd, "w") as stream:
        json.dump(data, stream, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def inventory_path(cluster: Cluster) -> Path:
    return cluster.files.inventory
