"""elasticcluster: create, set up, grow and tear down compute clusters on clouds.

The public names of the seed's API are importable from here; they are loaded
on first use so that ``import elasticcluster`` (and the CLI) stay quick.
"""
import logging

__version__ = "1.0.0.dev0"

#: The package logger; configure it like any ``logging`` logger.
log = logging.getLogger("elasticcluster")

_LAZY = {
    "Cluster": "elasticcluster.cluster",
    "Node": "elasticcluster.cluster",
    "Configurator": "elasticcluster.conf",
    "AbstractClusterRepository": "elasticcluster.repository",
    "ClusterRepository": "elasticcluster.repository",
    "DiskRepository": "elasticcluster.repository",
    "MemRepository": "elasticcluster.repository",
    "AnsibleSetupProvider": "elasticcluster.providers",
    "BotoCloudProvider": "elasticcluster.providers",
    "GoogleCloudProvider": "elasticcluster.providers",
    "cloud_provider": "elasticcluster.providers",
    "Events": "elasticcluster.operations",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'elasticcluster' has no attribute {name!r}")
    import importlib

    # the API's clusters run the cluster operations: load them with any name of the API
    importlib.import_module("elasticcluster.operations")
    return getattr(importlib.import_module(module), name)


__all__ = ["log", "__version__", *_LAZY]
