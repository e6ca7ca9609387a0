"""The autoscaler's reading of SLURM and its plan (the whole loop runs on real nodes in
tests/local/test_autoscale.py)."""
from __future__ import annotations

import pytest

from elasticcluster.autoscale import check_autoscaled, node_states, plan
from elasticcluster.cluster import Cluster
from elasticcluster.config import load_config
from elasticcluster.exceptions import UsageError

#: ``scontrol show nodes -o`` of SLURM 22.05 (fields cut short), powering-up and powered-down
#: cloud nodes beside a real one
SCONTROL = """\
NodeName=compute001 Arch=x86_64 CoresPerSocket=1 CPUAlloc=1 CPUTot=1 State=ALLOCATED+CLOUD ThreadsPerCore=1
NodeName=compute002 CoresPerSocket=1 CPUAlloc=1 CPUTot=1 State=ALLOCATED+CLOUD+POWERING_UP ThreadsPerCore=1
NodeName=compute003 CoresPerSocket=1 CPUAlloc=0 CPUTot=1 State=IDLE+CLOUD+POWERED_DOWN ThreadsPerCore=1
NodeName=compute004 CoresPerSocket=1 CPUAlloc=0 CPUTot=1 State=IDLE+CLOUD+POWERING_DOWN ThreadsPerCore=1
NodeName=compute005 CoresPerSocket=1 CPUAlloc=0 CPUTot=1 State=DOWN+CLOUD+POWERED_DOWN+NOT_RESPONDING
"""

CONFIG = """\
[cloud/local]
provider = local

[login/l]
image_user = u
user_key_name = k
user_key_private = ~/.ssh/id_rsa
user_key_public = ~/.ssh/id_rsa.pub

[setup/s]
frontend_groups = {master}
compute_groups = slurm_worker

[cluster/c]
cloud = local
login = l
setup_provider = s
image_id = debian
flavor = small
frontend_nodes = 1
compute_nodes = {static}
{ceiling}
"""


def cluster_of(write_config, master="slurm_master", static=0, ceiling="compute_nodes_max = 5",
               nodes=()) -> Cluster:
    config = load_config(write_config(CONFIG.format(master=master, static=static, ceiling=ceiling)))
    template = config.templates["c"]
    cluster = Cluster("c", template="c")
    cluster.template_spec = template
    template.add_nodes(cluster, "frontend", 1)
    for name, set_up in nodes:
        (node,) = template.add_nodes(cluster, "compute", 1, names=[name])
        node.extra["set_up"] = set_up
    return cluster


def test_node_states_reads_every_flag():
    states = node_states(SCONTROL)
    assert states["compute002"] == {"ALLOCATED", "CLOUD", "POWERING_UP"}
    assert states["compute005"] == {"DOWN", "CLOUD", "POWERED_DOWN", "NOT_RESPONDING"}
    assert len(states) == 5


def test_the_elastic_range_and_its_validation(write_config, home):
    cluster = cluster_of(write_config, static=1)
    assert check_autoscaled(cluster) == {"compute": ["compute002", "compute003", "compute004", "compute005"]}
    bad = load_config(write_config(CONFIG.format(master="slurm_master", static=3, ceiling="compute_nodes_max = 2")))
    assert any("compute_nodes_max = 2 is less than compute_nodes = 3" in p for p in bad.skipped["c"])


def test_plan_follows_slurm(write_config, home):
    cluster = cluster_of(write_config, static=1, nodes=[("compute003", True), ("compute004", True),
                                                        ("compute005", False)])
    found = plan(cluster, check_autoscaled(cluster), node_states(SCONTROL))
    assert found.wanted == ["compute002"]  # powering up, no instance yet
    assert found.going == ["compute003", "compute004", "compute005"]  # powered (or powering) down
    assert found.starting == [] and found.up == []


def test_plan_never_removes_a_node_with_a_job(write_config, home):
    cluster = cluster_of(write_config, nodes=[("compute002", True)])
    states = {"compute002": {"ALLOCATED", "CLOUD", "POWER_DOWN"}}
    found = plan(cluster, check_autoscaled(cluster), states)
    assert found.going == []


def test_plan_sets_up_a_node_made_by_a_killed_round(write_config, home):
    cluster = cluster_of(write_config, nodes=[("compute001", False), ("compute002", True)])
    states = {"compute001": {"ALLOCATED", "CLOUD", "POWERING_UP"},
              "compute002": {"ALLOCATED", "CLOUD", "POWERING_UP"}}
    found = plan(cluster, check_autoscaled(cluster), states)
    assert found.starting == ["compute001"] and found.up == ["compute002"] and found.wanted == []


@pytest.mark.parametrize("master, ceiling, says", [
    ("gridengine_master", "compute_nodes_max = 5", "does not run SLURM"),
    ("slurm_master", "", "no node kind of cluster 'c' is autoscaled"),
])
def test_autoscale_refuses_what_it_cannot_follow(write_config, home, master, ceiling, says):
    with pytest.raises(UsageError, match=says):
        check_autoscaled(cluster_of(write_config, master=master, ceiling=ceiling))


def test_plan_leaves_nodes_given_up_on_to_slurm(write_config, home):
    """A node marked DOWN (its instance failed) stays wanted by SLURM until its ResumeTimeout:
    it is not made again; SLURM requeues its jobs on others."""
    cluster = cluster_of(write_config, nodes=[])
    states = {"compute001": {"MIXED", "DOWN", "CLOUD", "NOT_RESPONDING", "POWERING_UP"},
              "compute002": {"MIXED", "CLOUD", "NOT_RESPONDING", "POWERING_UP"}}
    found = plan(cluster, check_autoscaled(cluster), states)
    assert found.wanted == ["compute002"] and found.failed == []
