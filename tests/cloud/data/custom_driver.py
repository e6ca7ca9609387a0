"""A NodeDriver of our own, for ``driver = tests.cloud.data.custom_driver:TinyNodeDriver``.

It stands for a driver that libcloud does not ship: a cloud section names it
and elasticcluster registers it with libcloud at run time. It talks to no
cloud: its nodes live in a list shared by every driver object with the same
token (elasticcluster gives each worker thread a driver of its own, as it
would have a connection of its own to a real cloud).
"""
import threading

from libcloud.compute.base import Node, NodeDriver, NodeImage, NodeSize
from libcloud.compute.types import NodeState

_CLOUDS: dict[str, list] = {}
_LOCK = threading.Lock()


class TinyNodeDriver(NodeDriver):
    name = "Tiny (elasticcluster tests)"
    website = "https://example.org/"
    type = "tiny"
    # `auth` takes an SSH key: how elasticcluster puts the login's key on a node
    features = {"create_node": ["ssh_key"]}

    def __init__(self, api_token, region="here", max_nodes=3):
        # no NodeDriver.__init__: there is no connection to make
        self.api_token = api_token
        self.region = region
        self.max_nodes = max_nodes
        self.nodes = _CLOUDS.setdefault(api_token, [])

    def list_nodes(self):
        return list(self.nodes)

    def list_images(self, location=None):
        return [NodeImage("tiny-image", "tiny-image", self)]

    def list_sizes(self, location=None):
        return [NodeSize("tiny-size", "tiny-size", 512, 1, 0, 0, self)]

    def create_node(self, name, size, image, auth=None, ex_metadata=None):
        with _LOCK:
            node = Node(f"tiny-{len(self.nodes)}", name, NodeState.RUNNING, [], [], self,
                        extra={"metadata": dict(ex_metadata or {}), "auth": auth})
            self.nodes.append(node)
        return node
