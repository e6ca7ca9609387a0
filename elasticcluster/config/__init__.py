"""The configuration: read the files (``reader``), check each section against
its schema (``schema``) and link the sections into cluster templates (``link``).

``load_config(path)`` does all three and returns the valid templates together
with the problems of the invalid ones.

The names below are loaded on first use: importing ``elasticcluster.config.reader``
alone (as the template cache does on every ``list-templates``) must not pull in
the schema checker (cerberus) and the linker.
"""
_LAZY = {
    "ClusterTemplate": "elasticcluster.config.link",
    "Config": "elasticcluster.config.link",
    "NodeKind": "elasticcluster.config.link",
    "load_config": "elasticcluster.config.link",
    "DEFAULT_CONFIG_PATH": "elasticcluster.config.reader",
    "deploy_default_config": "elasticcluster.config.reader",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'elasticcluster.config' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = list(_LAZY)
