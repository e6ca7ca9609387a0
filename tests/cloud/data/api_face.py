"""A library user's script: one cluster operation through the Python API (1.0 docs, 4.5).

    python api_face.py CONFIG STORAGE VERB NAME [ARGS...]

start TEMPLATE [WORKERS] | resize ADD_JSON REMOVE_JSON | remove-node NODE | pause | resume |
bake [KIND...] | stop [--force] [--keep-images]. Errors are the project's exceptions: the message
and their exit status.
"""
import json
import sys

from elasticcluster import Configurator
from elasticcluster.exceptions import ClusterExists, ElasticClusterError

config, storage, verb, name, *rest = sys.argv[1:]
conf = Configurator.fromConfig(config, storage)
try:
    if verb == "start":  # a new cluster, or the rest of one whose start was interrupted
        try:
            cluster = conf.create_cluster(rest[0], name)
        except ClusterExists:
            cluster = conf.load_cluster(name)
        cluster.start(max_workers=int(rest[1]) if len(rest) > 1 else None)
    elif verb == "resize":  # setup=False: the moto tests' "nodes" are this machine
        conf.load_cluster(name).resize(add=json.loads(rest[0]), remove=json.loads(rest[1]), setup=False)
    elif verb == "remove-node":
        cluster = conf.load_cluster(name)
        cluster.remove_node(cluster.get_node_by_name(rest[0]), stop=True, setup=False)
    elif verb == "pause":
        conf.load_cluster(name).pause()
    elif verb == "resume":
        conf.load_cluster(name).resume()
    elif verb == "bake":
        for kind, record in conf.load_cluster(name).bake(kinds=rest or None).items():
            print(f"{kind}: {record['id']} (from {record['from']})")
    elif verb == "stop":
        kept = conf.load_cluster(name).stop(force="--force" in rest, keep_images="--keep-images" in rest)
        for kind, record in sorted(kept.items()):
            print(f"  {kind}: {record['id']}")
    else:
        raise SystemExit(f"unknown verb {verb}")
except ElasticClusterError as err:
    print(f"ERROR: {err}", file=sys.stderr)
    sys.exit(err.exit_status)
