"""How elasticcluster marks what it creates on a cloud, the same on every cloud.

Every instance is named ``CLUSTER-NODE`` and tagged with its cluster and node
names: the cloud's tags, not our state file, are the last word on which
instances belong to a cluster (``stop`` finds by tag what a state file lost).
"""
from __future__ import annotations

import re

#: the tag holding the cluster's name
TAG_CLUSTER = "elasticcluster-cluster"
#: the tag holding the node's name (``compute001``)
TAG_NODE = "elasticcluster-node"


def instance_name(cluster: str, node: str) -> str:
    """The instance name on the cloud: ``CLUSTER-NODE``, lower case, letters, digits and '-'."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{cluster}-{node}".lower()).strip("-")


def label_value(value: str) -> str:
    """``value`` by the rules of GCE labels: lower case letters, digits, '_' and '-', at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
