"""The Ansible inventory of a cluster (seed 4.2.4, 4.5.10).

Each node is in the groups its kind's ``KIND_groups`` lists; ``KIND_var_VAR``
become host variables of that kind's nodes and ``global_var_VAR`` variables of
all (they win over elasticcluster's connection defaults). The file is JSON,
which Ansible's YAML inventory plugin reads as it is, written with mode 0600
into the storage folder.
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
from pathlib import Path

from elasticcluster.cluster import Cluster
from elasticcluster.ssh import Login, address_of, known_hosts_path, proxy_command


def inventory_path(cluster: Cluster) -> Path:
    return Path(cluster.repository.storage_path) / f"{cluster.name}.inventory.json"


def inventory_for(cluster: Cluster, template) -> dict:
    """The inventory of ``cluster``, grouped and configured as ``template``'s setup section says."""
    login = Login.of(cluster)
    ssh_args = ["-o", f"UserKnownHostsFile={known_hosts_path(cluster)}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "CheckHostIP=no"]
    all_vars = {
        "ansible_user": login.user,
        "ansible_port": login.port,
        "ansible_ssh_private_key_file": login.private_key,
        "ansible_ssh_common_args": shlex.join(ssh_args),
        "ansible_become": login.become,
        "ansible_become_user": login.become_user,
        "ansible_python_interpreter": "/usr/bin/python3",
        "elasticcluster_cluster": cluster.name,
        "elasticcluster_frontend": cluster.get_frontend_node().name if cluster.get_all_nodes() else None,
    }
    all_vars.update(template.global_vars)
    hosts, children = {}, {}
    for node in cluster.get_all_nodes():
        spec = template.kinds.get(node.kind)
        host = {"ansible_host": address_of(node), "elasticcluster_kind": node.kind,
                "elasticcluster_private_ip": (node.private_ips or node.ips or [None])[0]}
        for key, extra in (("elasticcluster_cpus", "flavor_cpus"),
                           ("elasticcluster_memory_mb", "flavor_ram")):
            if node.extra.get(extra):
                host[key] = node.extra[extra]
        if node.image_user and node.image_user != login.user:
            host["ansible_user"] = node.image_user
        proxy = proxy_command(cluster, node)
        if proxy:
            host["ansible_ssh_common_args"] = shlex.join([*ssh_args, "-o", f"ProxyCommand={proxy}"])
        if spec is not None:
            host.update(spec.vars)
            for group in spec.groups:
                children.setdefault(group, {"hosts": {}})["hosts"][node.name] = None
        hosts[node.name] = host
    return {"all": {"vars": all_vars, "hosts": hosts, "children": children}}


def write_inventory(cluster: Cluster, template) -> Path:
    """Write the inventory into the storage folder (mode 0600) and return its path."""
    path = inventory_path(cluster)
    data = inventory_for(cluster, template)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{cluster.name}.", suffix=".inv")
    with os.fdopen(fd, "w") as stream:
        json.dump(data, stream, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
