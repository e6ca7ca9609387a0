"""A fake libcloud compute driver with a configurable API latency and boot time.

Used by ``bench/bench_start_latency.py``; registered by configuration alone::

    [cloud/slow]
    provider = slow
    driver = bench.slow_driver:SlowNodeDriver
    key = x
    latency = 0.05
    boot_time = 3
    state_dir = /tmp/slow-cloud

(the repository root must be on ``PYTHONPATH`` so that ``bench`` imports).

Every driver method sleeps ``latency`` seconds (outside any lock, so that
concurrent calls overlap as on a real API), then works on a set of instances
kept as a JSON file in ``state_dir``: the CLI runs as separate processes
(``start``, then ``stop``), so the state must outlive one of them. An instance
is ``pending`` for ``boot_time`` seconds after its create call, then
``running`` with a private address in 198.18.0.0/15, the range set aside for
benchmarks (RFC 2544); nothing here opens a socket, and the benchmark stubs
the SSH wait so that nobody contacts those addresses. ``calls.json`` in the same folder counts the calls per
method, so the benchmark can show one ``list_nodes`` per poll round.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager

from libcloud.compute.base import KeyPair, Node, NodeDriver, NodeImage, NodeSize
from libcloud.compute.types import NodeState

_LOCK = threading.Lock()


class SlowNodeDriver(NodeDriver):
    """In-memory-and-on-disk cloud: ``latency`` s per call, nodes run ``boot_time`` s after creation."""

    type = "slow"
    name = "Slow fake cloud (elasticcluster benchmark)"
    website = "https://example.invalid/"
    features = {"create_node": ["ssh_key"]}

    def __init__(self, key, latency=0.5, boot_time=30.0, state_dir=None, secret=None):
        super().__init__(key=key, secret=secret)
        self.latency = float(latency)
        self.boot_time = float(boot_time)
        self.state_dir = state_dir or os.path.join(os.environ.get("TMPDIR", "/tmp"), "slow-cloud")
        os.makedirs(self.state_dir, exist_ok=True)
        self._path = os.path.join(self.state_dir, "cloud.json")

    # -- the fake API's plumbing ---------------------------------------------------

    @contextmanager
    def _state(self, method: str, write: bool = False):
        """Sleep ``latency`` (the round trip), then lock the state file and yield its content."""
        time.sleep(self.latency)
        with _LOCK, open(os.path.join(self.state_dir, "lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._load()
                state["calls"][method] = state["calls"].get(method, 0) + 1
                yield state
                self._dump(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict:
        try:
            with open(self._path) as stream:
                return json.load(stream)
        except FileNotFoundError:
            return {"instances": {}, "key_pairs": {}, "calls": {}, "serial": 0}

    def _dump(self, state: dict) -> None:
        tmp = self._path + ".tmp"
        with open(tmp, "w") as stream:
            json.dump(state, stream)
        os.replace(tmp, self._path)

    def _node(self, record: dict, now: float) -> Node:
        if record["terminated"]:
            state = NodeState.TERMINATED
        elif now - record["created"] >= self.boot_time:
            state = NodeState.RUNNING
        else:
            state = NodeState.PENDING
        private = [record["private_ip"]] if state == NodeState.RUNNING else []
        return Node(id=record["id"], name=record["name"], state=state, public_ips=[], private_ips=private,
                    driver=self, size=None, image=None,
                    extra={"tags": dict(record["tags"]), "client_token": record.get("client_token"),
                           "key_name": record.get("key_name")})

    # -- the NodeDriver API ------------------------------------------------------------

    def list_images(self, location=None):
        with self._state("list_images"):
            return [NodeImage(id="img-bench", name="bench-image", driver=self)]

    def get_image(self, image_id):
        for image in self.list_images():
            if image_id in (image.id, image.name):
                return image
        raise ValueError(f"image {image_id} not found")

    def list_sizes(self, location=None):
        with self._state("list_sizes"):
            return [NodeSize(id="small", name="small", ram=1024, disk=10, bandwidth=None, price=0.0,
                             driver=self)]

    def list_key_pairs(self):
        with self._state("list_key_pairs") as state:
            return [KeyPair(name=name, public_key=key, fingerprint=_fingerprint(key), driver=self)
                    for name, key in state["key_pairs"].items()]

    def import_key_pair_from_string(self, name, key_material):
        with self._state("import_key_pair_from_string") as state:
            if name in state["key_pairs"]:
                raise ValueError(f"key pair {name} already exists")
            state["key_pairs"][name] = key_material
        return KeyPair(name=name, public_key=key_material, fingerprint=_fingerprint(key_material),
                       driver=self)

    def create_node(self, name, size, image, location=None, auth=None, ex_keyname=None, ex_tags=None,
                    ex_userdata=None, ex_client_token=None):
        with self._state("create_node") as state:
            state["serial"] += 1
            serial = state["serial"]
            record = {"id": f"i-{uuid.uuid4().hex[:17]}", "name": name, "created": time.time(),
                      "terminated": False, "tags": dict(ex_tags or {}), "key_name": ex_keyname,
                      "client_token": ex_client_token,
                      "private_ip": f"198.{18 + (serial >> 16 & 1)}.{serial >> 8 & 255}.{serial & 255}"}
            state["instances"][record["id"]] = record
        return self._node(record, record["created"])

    def list_nodes(self):
        with self._state("list_nodes") as state:
            now = time.time()
            return [self._node(r, now) for r in state["instances"].values()]

    def destroy_node(self, node):
        with self._state("destroy_node") as state:
            record = state["instances"].get(node.id)
            if record is None or record["terminated"]:
                return False
            record["terminated"] = True
            return True


def _fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def calls(state_dir: str) -> dict[str, int]:
    """Calls per method so far (read by the benchmark)."""
    try:
        with open(os.path.join(state_dir, "cloud.json")) as stream:
            return dict(json.load(stream)["calls"])
    except FileNotFoundError:
        return {}


def reset(state_dir: str) -> None:
    """Forget every instance and call count (key pairs stay)."""
    path = os.path.join(state_dir, "cloud.json")
    try:
        with open(path) as stream:
            state = json.load(stream)
    except FileNotFoundError:
        return
    state.update(instances={}, calls={}, serial=0)
    with open(path, "w") as stream:
        json.dump(state, stream)
