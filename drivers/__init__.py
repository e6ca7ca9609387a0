"""Cloud mappings (``*.toml``, one per cloud family) and drivers libcloud does not ship.

Installed as ``elasticcluster.drivers``; see ``elasticcluster.cloud_catalog``
for the format of the mapping files.
"""
