"""The configuration: read the files (``reader``), check each section against
its schema (``schema``) and link the sections into cluster templates (``link``).

``load_config(path)`` does all three and returns the valid templates together
with the problems of the invalid ones.
"""
from elasticcluster.config.link import ClusterTemplate, Config, NodeKind, load_config
from elasticcluster.config.reader import DEFAULT_CONFIG_PATH, deploy_default_config

__all__ = [
    "ClusterTemplate",
    "Config",
    "NodeKind",
    "load_config",
    "DEFAULT_CONFIG_PATH",
    "deploy_default_config",
]
