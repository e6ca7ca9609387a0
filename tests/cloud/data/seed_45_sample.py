"""The sample code of the 1.0 docs, section 4.5.1 ("Start and setup a SLURM cluster" and
"Storing a cluster on disk"), as a library user writes it, against the cloud the test gives.

    python seed_45_sample.py EC2_URL ACCESS_KEY SECRET_KEY IMAGE_ID KEY_PATH STORAGE PLAYBOOK

Where it differs from the docs, the comment says why: the docs' ``import elasticsearch`` is a
typo for elasticcluster; the test's nodes are reached as root with the test's key; the
playbook is the tests' no-op one, as the test's "nodes" are the test machine itself.
"""
import sys

import elasticcluster

url, access_key, secret_key, image_id, key_path, storage, playbook = sys.argv[1:]

# Initialise an EC2 compatible cloud provider: url, region, access key, secret key
cloud_provider = elasticcluster.BotoCloudProvider(url, "us-east-1", access_key, secret_key)

# the groups dictionary specifies the kind of nodes used for this cluster
groups = dict()
groups["frontend"] = ["slurm_master"]
groups["compute"] = ["slurm_clients"]

setup_provider = elasticcluster.AnsibleSetupProvider(groups, playbook_path=playbook)

# The cluster repository stores clusters, each in its own folder of the storage directory
repository = elasticcluster.ClusterRepository(storage)

cluster = elasticcluster.Cluster("my-cluster", cloud_provider,
                                 setup_provider, "ssh_key_name",
                                 key_path + ".pub",
                                 key_path,
                                 repository=repository)

cluster.add_node("frontend", image_id, "root",
                 "t2.micro", "all_tcp_ports")
cluster.add_nodes("compute", 2, image_id, "root", "t2.micro",
                  "all_tcp_ports")

# create the instances, wait until they run and accept SSH
cluster.start()

# configure the nodes
assert cluster.setup()

# After a program shutdown we can fetch the cluster from the repository again
repository = elasticcluster.ClusterRepository(storage)
cluster = repository.get("my-cluster")
clusters = repository.get_all()
print("nodes:", " ".join(sorted(f"{n.name}={n.instance_id}" for n in cluster.get_all_nodes())))
print("clusters:", " ".join(c.name for c in clusters))

# a cluster read back from the repository is given its cloud provider again, then stopped
cluster.cloud_provider = cloud_provider
cluster.stop()
print("stopped")
