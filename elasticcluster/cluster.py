"""The data model: a ``Cluster`` of ``Node`` objects, grouped by kind.

A node is named after its kind and a three-digit index (``compute001``).
Both classes turn into plain dicts (``to_dict``/``from_dict``) for the state
store; no secret is part of them.

The model does the cloud and setup work of its seed methods (``start``,
``stop``, ``setup``, ``update``, ``resize``, ``bake``, ...) through the cluster
operations, which register themselves here when ``elasticcluster.operations``
is imported (``Configurator`` and ``elasticcluster.providers`` do): the model
never imports the layers above it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from elasticcluster.exceptions import ElasticClusterError, NodeNotFound, UsageError
from elasticcluster.limits import MAX_NODES
from elasticcluster.store import CLUSTER_NAME_RE, MemRepository, check_cluster_name

if TYPE_CHECKING:
    from elasticcluster.store import AbstractClusterRepository, ClusterFiles

__all__ = ["Cluster", "Node", "check_cluster_name", "CLUSTER_NAME_RE", "KIND_RE", "MAX_NODES",
           "parse_node_counts", "use_operations"]

#: kinds become host names: letters, digits, '-' and (for ElastiCluster 1.3 configs) '_'
KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_INDEX_RE = re.compile(r"[0-9]{3,}")
_COUNT_RE = re.compile(r"^\s*(\d+)\s*:\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*$")

#: the cluster operations module, registered by ``elasticcluster.operations`` on import
_operations = None


def use_operations(operations) -> None:
    """Give the model the operations its seed methods call (``elasticcluster.operations``)."""
    global _operations
    _operations = operations


def _is_image(record) -> bool:
    return isinstance(record, dict) and isinstance(record.get("id"), str) and bool(record["id"])


def parse_node_counts(text: str) -> dict[str, int]:
    """``N1:KIND1[,N2:KIND2,...]`` (``start --nodes``, ``resize -a/-r``) -> {KIND: N}."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        match = _COUNT_RE.match(part)
        if not match:
            raise UsageError(f"'{part.strip()}' is not N:KIND (expected e.g. 10:compute or "
                             "1:frontend,4:compute)")
        counts[match.group(2)] = counts.get(match.group(2), 0) + int(match.group(1))
    return counts


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

    ``nodes`` maps each kind to its list of ``Node``. The cloud provider, the
    setup provider and the template a cluster was made from are given to it
    (by ``Configurator``, or by hand as in the seed); its seed methods run the
    cluster operations with them and save the cluster through its repository.
    """

    #: timeout in seconds to start all nodes, when no template says otherwise (seed)
    startup_timeout = 600

    def __init__(self, name: str, cloud_provider=None, setup_provider=None,
                 user_key_name: str | None = None, user_key_public: str | None = None,
                 user_key_private: str | None = None,
                 repository: AbstractClusterRepository | None = None, **extra):
        self.name = check_cluster_name(name)
        self._cloud_provider = cloud_provider
        #: makes the CloudProvider on first use (set by the Configurator)
        self._provider_factory = None
        self.setup_provider = setup_provider
        #: the template (``config.link.ClusterTemplate``) the cluster is made from, when known:
        #: new nodes of a kind are made as it says, and its settings (timeouts...) apply
        self.template_spec = None
        self.user_key_name = user_key_name
        self.user_key_public = user_key_public
        self.user_key_private = user_key_private
        self.repository = repository if repository is not None else MemRepository()
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
        index = node.name[len(kind):] if node.name.startswith(kind) else ""
        if _INDEX_RE.fullmatch(index):
            last = self.extra.setdefault("last_index", {})
            last[kind] = max(int(last.get(kind, 0)), int(index))
        return node

    def add_nodes(self, kind: str, num: int, image_id: str, image_user: str, flavor: str,
                  security_group: str | None, image_userdata: str = "", **extra) -> list[Node]:
        total = sum(len(nodes) for nodes in self.nodes.values()) + num
        if total > MAX_NODES:
            raise UsageError(f"cluster {self.name} would have {total} nodes; a cluster holds at most "
                             f"{MAX_NODES}")
        return [self.add_node(kind, image_id, image_user, flavor, security_group, image_userdata,
                              **extra) for _ in range(num)]

    def _next_index(self, kind: str) -> int:
        """One more than any index this kind ever had (names of removed nodes are not reused)."""
        last = int((self.extra.get("last_index") or {}).get(kind, 0))
        if last:
            return last + 1
        used = [0]
        for node in self.nodes.get(kind, []):  # a cluster stored before last_index was kept
            # the index is what follows the kind, so kinds ending in digits (gpu2) work too
            index = node.name[len(kind):] if node.name.startswith(kind) else ""
            if _INDEX_RE.fullmatch(index):
                used.append(int(index))
        return max(used) + 1

    def remove_node(self, node: Node, stop: bool = False, setup: bool = True, **options) -> None:
        """Remove ``node`` from the model; it is not stopped (seed 4.5.2) unless ``stop``:
        then its instance is terminated and (unless ``setup=False``) the other nodes are
        set up again so that they forget it, as ``elasticcluster remove-node`` does."""
        if stop:
            self._ops().remove_node(self, node.name, setup=setup, **options)
            return
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

    @property
    def images(self) -> dict[str, dict]:
        """The baked image of each kind (``bake``): kind -> a copy of its record (``id``, ``name``,
        ``from``, ``made``, ``base``, ``groups``); what is not such a record (a state file edited by hand) is
        left out."""
        found = self.extra.get("images")
        if not isinstance(found, dict):
            return {}
        return {kind: dict(record) for kind, record in found.items() if _is_image(record)}

    @property
    def old_images(self) -> list[dict]:
        """Images that a later bake replaced and that could not be deleted yet (``stop`` does)."""
        found = self.extra.get("old_images")
        return [dict(record) for record in found if _is_image(record)] if isinstance(found, list) else []

    # -- persistence ---------------------------------------------------------

    @property
    def files(self) -> ClusterFiles:
        """The folder of this cluster's files (known_hosts, inventory, ...), from its repository."""
        return self.repository.files(self.name)

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

    def load_state(self, other: Cluster) -> None:
        """Take the stored state of ``other`` (the same cluster, read again), keeping this
        object's providers: an operation re-reads its cluster once it holds the lock."""
        if other.name != self.name:
            raise ValueError(f"cannot load the state of cluster {other.name} into {self.name}")
        for attribute in ("template", "cloud", "provider", "login", "setup_name", "ssh_to",
                          "user_key_name", "user_key_public", "user_key_private", "extra", "nodes"):
            setattr(self, attribute, getattr(other, attribute))

    # -- the lifecycle (seed 4.5.2): the cluster operations ------------------------------

    @property
    def cloud_provider(self):
        """The CloudProvider of this cluster (built on first use when the Configurator made it)."""
        if self._cloud_provider is None and self._provider_factory is not None:
            self._cloud_provider = self._provider_factory()
        return self._cloud_provider

    @cloud_provider.setter
    def cloud_provider(self, provider) -> None:
        self._cloud_provider = provider

    def _ops(self):
        if _operations is None:
            raise ElasticClusterError(
                f"cluster '{self.name}': no cluster operations are loaded; make clusters with "
                "elasticcluster.Configurator (or import elasticcluster.operations)")
        return _operations

    def start(self, min_nodes: dict[str, int] | None = None, **options) -> None:
        """Create the nodes not created yet, wait until they run and accept SSH (saved as it goes).

        ``min_nodes`` (kind -> number) lets the start go on when a quota stops some nodes;
        ``options``: those of ``operations.start`` (``max_workers``, ``events``, ``setup``).
        """
        self._ops().start(self, min_nodes=min_nodes, **options)

    def stop(self, force: bool = False, **options) -> dict:
        """Terminate every node (and any the cloud tags as this cluster's), delete the cluster's
        baked images (unless ``keep_images=True``: then they are returned, kind -> record) and
        forget the cluster."""
        return self._ops().stop(self, force=force, **options)

    def setup(self, extra_args: list[str] = (), **options) -> bool:
        """Configure the nodes with the setup provider; True on success (the failure is logged)."""
        return self._ops().setup_succeeds(self, extra_args=extra_args, **options)

    def update(self, **options) -> None:
        """Refresh states and addresses of the nodes from the cloud (and save them)."""
        self._ops().refresh(self, **options)

    def resize(self, add: dict[str, int] | None = None, remove: dict[str, int] | None = None,
               **options) -> None:
        """Add (``{"compute": 2}``) and/or remove nodes (the newest of a kind go first), then set
        the cluster up again unless ``setup=False``: ``elasticcluster resize``."""
        self._ops().resize(self, add=add, remove=remove, **options)

    def bake(self, kinds: list[str] | None = None, **options) -> dict:
        """Make an image of one set-up node of each kind (or of ``kinds``), without its SSH host
        keys or the cluster's secrets; new nodes of that kind boot from it: ``elasticcluster
        bake``. Returns kind -> the image's record (``id``, ``name``, ``from``, ``made``)."""
        return self._ops().bake(self, kinds=kinds, **options)

    def pause(self, **options) -> None:
        """Stop the nodes without terminating them."""
        self._ops().pause(self, **options)

    def resume(self, **options) -> None:
        """Start the nodes of a paused cluster again and wait until they accept SSH."""
        self._ops().resume(self, **options)

    def __repr__(self) -> str:
        return f"<Cluster {self.name} {self.node_counts()}>"
