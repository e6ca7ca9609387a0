"""The data model: a ``Cluster`` of ``Node`` objects, grouped by kind.

A node is named after its kind and a three-digit index (``compute001``).
Both classes turn into plain dicts (``to_dict``/``from_dict``) for the state
store; no secret is part of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from elasticcluster.exceptions import ElasticClusterError, NodeNotFound

if TYPE_CHECKING:
    from elasticcluster.repository import AbstractClusterRepository

#: kinds become host names: letters, digits, '-' and (for ElastiCluster 1.3 configs) '_'
KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: cluster names become file names in the storage folder
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
_INDEX_RE = re.compile(r"[0-9]{3,}")


def check_cluster_name(name: str) -> str:
    if not CLUSTER_NAME_RE.fullmatch(name or ""):
        raise ValueError(
            f"invalid cluster name {name!r}: expected letters, digits, '.', '_', '+' or '-' "
            "(starting with a letter or digit, at most 100 characters)")
    return name


@dataclass
class Node:
    """One instance of a cluster (seed 4.5.2)."""

    name: str
    kind: str
    cluster_name: str
    image_id: str
    image_user: str
    flavor: str
    security_group: str | None = None
    image_userdata: str = ""
    network_ids: list[str] = field(default_factory=list)
    login: str | None = None
    #: id of the instance on the cloud, once its create call returned
    instance_id: str | None = None
    #: IP address used to connect to the node
    preferred_ip: str | None = None
    public_ips: list[str] = field(default_factory=list)
    private_ips: list[str] = field(default_factory=list)
    #: new, creating, running, stopped, paused, terminated, error ...
    state: str = "new"
    extra: dict = field(default_factory=dict)

    #: timeout in seconds to connect to a node via ssh (seed default)
    connection_timeout = 5

    @property
    def ips(self) -> list[str]:
        return [*self.public_ips, *(ip for ip in self.private_ips if ip not in self.public_ips)]

    def connection_ip(self) -> str | None:
        """The IP to connect to: the preferred one, else a public, else a private one."""
        if self.preferred_ip:
            return self.preferred_ip
        return (self.public_ips or self.private_ips or [None])[0]

    def pprint(self) -> str:
        lines = [
            f"{self.name}",
            f"  public IP:   {', '.join(self.public_ips) or '-'}",
            f"  private IP:  {', '.join(self.private_ips) or '-'}",
            f"  instance id: {self.instance_id or '-'}",
            f"  instance flavor: {self.flavor}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        # what asdict() gives for these flat fields, without its recursive deep copy: a state
        # write serialises every node, and asdict() made saving a 256-node cluster cost ~20 ms
        return {name: (list(value) if isinstance(value, list) else
                       dict(value) if isinstance(value, dict) else value)
                for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__)}

    @classmethod
    def from_dict(cls, data: dict) -> Node:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Cluster:
    """A named set of nodes started from a template (seed 4.5.2).

    ``nodes`` maps each kind to its list of ``Node``. Cloud and setup work is
    done by the lifecycle and setup modules; this class holds the model and
    saves itself through its repository.
    """

    def __init__(self, name: str, cloud_provider=None, setup_provider=None,
                 user_key_name: str | None = None, user_key_public: str | None = None,
                 user_key_private: str | None = None,
                 repository: AbstractClusterRepository | None = None, **extra):
        self.name = check_cluster_name(name)
        self._cloud_provider = cloud_provider
        #: makes the CloudProvider on first use (set by the Configurator)
        self._provider_factory = None
        self.setup_provider = setup_provider
        self.user_key_name = user_key_name
        self.user_key_public = user_key_public
        self.user_key_private = user_key_private
        if repository is None:
            from elasticcluster.repository import MemRepository

            repository = MemRepository()
        self.repository = repository
        self.template: str | None = extra.pop("template", None)
        self.cloud: str | None = extra.pop("cloud", None)
        self.provider: str | None = extra.pop("provider", None)
        self.login: str | None = extra.pop("login", None)
        self.setup_name: str | None = extra.pop("setup_name", None)
        self.ssh_to: str | None = extra.pop("ssh_to", None)
        self.extra: dict = extra
        self.nodes: dict[str, list[Node]] = {}

    # -- nodes ---------------------------------------------------------------

    def add_node(self, kind: str, image_id: str, image_user: str, flavor: str,
                 security_group: str | None, image_userdata: str = "", name: str | None = None,
                 **extra) -> Node:
        """Add a (not yet started) node of ``kind``; its name is ``KINDnnn`` unless given."""
        if not KIND_RE.fullmatch(kind or ""):
            raise ValueError(f"invalid node kind {kind!r}: expected letters, digits, '-' or '_'")
        if name is None:
            index = self._next_index(kind)
            name = f"{kind}{index:03d}"
            self.extra.setdefault("last_index", {})[kind] = index
        elif any(n.name == name for n in self.get_all_nodes()):
            raise ValueError(f"cluster {self.name} already has a node named {name}")
        known = {f for f in Node.__dataclass_fields__}
        node = Node(name=name, kind=kind, cluster_name=self.name, image_id=image_id,
                    image_user=image_user, flavor=flavor, security_group=security_group,
                    image_userdata=image_userdata or "",
                    **{k: v for k, v in extra.items() if k in known},
                    )
        node.extra.update({k: v for k, v in extra.items() if k not in known})
        self.nodes.setdefault(kind, []).append(node)
        return node

    def add_nodes(self, kind: str, num: int, image_id: str, image_user: str, flavor: str,
                  security_group: str | None, image_userdata: str = "", **extra) -> list[Node]:
        return [self.add_node(kind, image_id, image_user, flavor, security_group, image_userdata,
                              **extra) for _ in range(num)]

    def _next_index(self, kind: str) -> int:
        """One more than any index this kind ever had (names of removed nodes are not reused)."""
        used = [int((self.extra.get("last_index") or {}).get(kind, 0))]
        for node in self.nodes.get(kind, []):
            # the index is what follows the kind, so kinds ending in digits (gpu2) work too
            index = node.name[len(kind):] if node.name.startswith(kind) else ""
            if _INDEX_RE.fullmatch(index):
                used.append(int(index))
        return max(used) + 1

    def remove_node(self, node: Node) -> None:
        """Remove ``node`` from the model (it is not stopped: seed 4.5.2)."""
        nodes = self.nodes.get(node.kind, [])
        if node not in nodes:
            raise NodeNotFound(f"cluster {self.name} has no node {node.name}")
        nodes.remove(node)
        if not nodes:
            del self.nodes[node.kind]

    def get_all_nodes(self) -> list[Node]:
        return [node for kind in sorted(self.nodes) for node in self.nodes[kind]]

    def get_node_by_name(self, name: str) -> Node:
        for node in self.get_all_nodes():
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.get_all_nodes()) or "none"
        raise NodeNotFound(f"cluster {self.name} has no node '{name}'; its nodes: {names}")

    def get_frontend_node(self) -> Node:
        """First node of the ``ssh_to`` kind, else (none given, or none left of that kind) of the
        first kind in alphabetical order."""
        if self.ssh_to and self.nodes.get(self.ssh_to):
            return self.nodes[self.ssh_to][0]
        for kind in sorted(self.nodes):
            if self.nodes[kind]:
                return self.nodes[kind][0]
        raise NodeNotFound(f"cluster {self.name} has no nodes")

    def node_counts(self) -> dict[str, int]:
        return {kind: len(nodes) for kind, nodes in sorted(self.nodes.items())}

    # -- persistence ---------------------------------------------------------

    def save(self) -> None:
        self.repository.save_or_update(self)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "template": self.template,
            "cloud": self.cloud,
            "provider": self.provider,
            "login": self.login,
            "setup": self.setup_name,
            "ssh_to": self.ssh_to,
            "user_key_name": self.user_key_name,
            "user_key_public": self.user_key_public,
            "user_key_private": self.user_key_private,
            "extra": self.extra,
            "nodes": {kind: [n.to_dict() for n in nodes] for kind, nodes in sorted(self.nodes.items())},
        }

    @classmethod
    def from_dict(cls, data: dict, repository=None) -> Cluster:
        cluster = cls(data["name"], user_key_name=data.get("user_key_name"),
                      user_key_public=data.get("user_key_public"),
                      user_key_private=data.get("user_key_private"), repository=repository,
                      template=data.get("template"), cloud=data.get("cloud"),
                      provider=data.get("provider"), login=data.get("login"),
                      setup_name=data.get("setup"), ssh_to=data.get("ssh_to"),
                      **dict(data.get("extra") or {}))
        for kind, nodes in (data.get("nodes") or {}).items():
            cluster.nodes[kind] = [Node.from_dict(n) for n in nodes]
        return cluster

    # -- the lifecycle (seed 4.5.2) ------------------------------------------------

    @property
    def cloud_provider(self):
        """The CloudProvider of this cluster (built on first use when the Configurator made it)."""
        if self._cloud_provider is None and self._provider_factory is not None:
            self._cloud_provider = self._provider_factory()
        return self._cloud_provider

    @cloud_provider.setter
    def cloud_provider(self, provider) -> None:
        self._cloud_provider = provider

    def _need(self, what: str):
        value = getattr(self, what)
        if value is None:
            raise ElasticClusterError(f"cluster '{self.name}' has no {what.replace('_', ' ')}: make it "
                                      "with Configurator.create_cluster, or pass one to Cluster()")
        return value

    def start(self, min_nodes: dict[str, int] | None = None, max_concurrent_requests: int = 10,
              startup_timeout: float = 600, ssh_probe_timeout: float = 5) -> None:
        """Create the nodes not created yet, wait until they run and accept SSH.

        ``min_nodes`` (kind -> number) lets the start go on when a quota stops some nodes.
        """
        from elasticcluster import lifecycle
        from elasticcluster.ssh_keys import ensure_key_pair, read_public_key

        provider = self._need("cloud_provider")
        if min_nodes:
            self.extra["min_nodes"] = dict(min_nodes)
        ensure_key_pair(self.user_key_private, self.user_key_public)
        todo = [n for n in self.get_all_nodes() if not n.instance_id]
        self.extra.setdefault("started", False)
        self.save()
        lifecycle.provision(provider, self, todo, public_key=read_public_key(self.user_key_public),
                            max_workers=max_concurrent_requests, startup_timeout=startup_timeout,
                            ssh_probe_timeout=ssh_probe_timeout)
        self.extra["started"] = True
        self.save()

    def stop(self, force: bool = False) -> None:
        """Terminate every node (and any the cloud tags as this cluster's) and forget the cluster."""
        from elasticcluster import lifecycle
        from elasticcluster.exceptions import CloudError

        outcome = lifecycle.terminate_instances(self._need("cloud_provider"), self, force=force)
        if outcome.failed and not force:
            self.save()
            raise CloudError(f"could not terminate: {outcome.failed}")
        self.repository.delete(self)

    def setup(self, extra_args: list[str] = ()) -> bool:
        """Configure the nodes with the setup provider; True on success."""
        return self._need("setup_provider").setup_cluster(self, extra_args=extra_args)

    def update(self) -> None:
        """Refresh states and addresses of the nodes from the cloud."""
        from elasticcluster import lifecycle

        lifecycle.refresh(self._need("cloud_provider"), self)
        self.save()

    def __repr__(self) -> str:
        return f"<Cluster {self.name} {self.node_counts()}>"
