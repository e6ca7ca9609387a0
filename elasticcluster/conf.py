"""The seed's ``Configurator``: the configuration plus factories that use it (seed 4.5.3).

A cluster made (``create_cluster``) or loaded (``load_cluster``) here is given
its cloud provider (made on first use), its setup provider and its template:
its seed methods (``start``, ``stop``, ``setup``, ``update``, ``resize``...)
then run the cluster operations of ``elasticcluster.operations``, the same
ones the command line runs.
"""
from __future__ import annotations

from pathlib import Path

from elasticcluster import operations  # noqa: F401 (gives the model its operations)
from elasticcluster.cluster import Cluster, check_cluster_name
from elasticcluster.config import Config, load_config
from elasticcluster.exceptions import ClusterExists
from elasticcluster.paths import DEFAULT_STORAGE
from elasticcluster.repository import AbstractClusterRepository, DiskRepository


class Configurator:
    """Keeps the configuration and builds clusters and providers from it."""

    def __init__(self, config: Config, storage_path: str | Path | None = None,
                 repository: AbstractClusterRepository | None = None):
        self.config = config
        self.storage_path = Path(storage_path or DEFAULT_STORAGE).expanduser()
        self.repository = repository or DiskRepository(self.storage_path)

    @classmethod
    def fromConfig(cls, configfile: str | Path, storage_path: str | Path | None = None) -> Configurator:
        """Read, validate and link ``configfile`` (and ``configfile.d/*.conf``)."""
        return cls(load_config(configfile), storage_path)

    def create_cluster(self, template: str, name: str | None = None,
                       node_counts: dict[str, int] | None = None) -> Cluster:
        """A new, not yet started cluster from ``template`` (named after it unless ``name``)."""
        spec = self.config.template(template)
        if node_counts:
            spec = spec.with_node_counts(node_counts)
        name = check_cluster_name(template if name is None else name)
        if self.repository.exists(name):
            where = f" in {self.storage_path}" if isinstance(self.repository, DiskRepository) else ""
            raise ClusterExists(f"a cluster named '{name}' is already stored{where}; "
                                "choose another name with -n NAME, or stop it first")
        login = spec.login
        cluster = Cluster(
            name, user_key_name=login["user_key_name"], user_key_public=login["user_key_public"],
            user_key_private=login["user_key_private"], repository=self.repository,
            template=spec.name, cloud=spec.cloud_name, provider=spec.provider,
            login=spec.login_name, setup_name=spec.setup_name, ssh_to=spec.ssh_to,
            min_nodes={kind: node.min_count for kind, node in spec.kinds.items()},
            login_info={key: login.get(key) for key in ("image_user", "image_sudo", "image_user_sudo",
                                                        "ssh_port", "ssh_proxy_command")},
        )
        for kind, node in sorted(spec.kinds.items()):
            spec.add_nodes(cluster, kind, node.count)
        return self._attach(cluster, spec)

    def load_cluster(self, cluster_name: str) -> Cluster:
        """A stored cluster, with its providers (made on first use) from this configuration."""
        return self._attach(self.repository.get(check_cluster_name(cluster_name)))

    def _attach(self, cluster: Cluster, spec=None) -> Cluster:
        """Give ``cluster`` a cloud provider (made on first use), a setup provider and its template."""
        from elasticcluster.cloud import provider_for
        from elasticcluster.playbook import AnsibleSetupProvider

        config = self.config
        if cluster.cloud:
            cluster._provider_factory = lambda: provider_for(config, cluster.cloud, cluster.name)
        if spec is None and cluster.template in config.templates:
            spec = config.templates[cluster.template]
        if spec is not None:
            cluster.template_spec = spec
            cluster.setup_provider = AnsibleSetupProvider.from_template(spec)
        return cluster

    def create_cloud_provider(self, cluster_template: str, cluster_name: str | None = None):
        """The CloudProvider of the template's cloud, scoped to ``cluster_name`` (default: the template's)."""
        from elasticcluster.cloud import provider_for

        spec = self.config.template(cluster_template)
        return provider_for(self.config, spec.cloud_name, cluster_name or cluster_template)

    def create_setup_provider(self, cluster_template: str, name: str | None = None):
        """The Ansible setup provider of the template's setup section."""
        from elasticcluster.playbook import AnsibleSetupProvider

        return AnsibleSetupProvider.from_template(self.config.template(cluster_template))
