"""slurm.conf as the SLURM roles write it, rendered by the real Ansible on this machine
(no node needed): static compute nodes, and the elastic range of an autoscaled kind
(``KIND_nodes_max``) declared as power-saving cloud nodes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ROLE = REPO / "playbooks" / "roles" / "slurm_common"


def render(tmp_path, hosts: dict[str, list[str]], extra: dict | None = None) -> list[str]:
    """slurm.conf's lines for an inventory of ``hosts`` (group -> host names)."""
    inventory = {"all": {"vars": {"ansible_connection": "local", "elasticcluster_cluster": "t1",
                                  "ansible_python_interpreter": sys.executable, **(extra or {})},
                         "children": {group: {"hosts": {h: {"elasticcluster_cpus": 2,
                                                            "elasticcluster_memory_mb": 2048}
                                                        for h in names}}
                                      for group, names in hosts.items()}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    out = tmp_path / "slurm.conf"
    (tmp_path / "play.yml").write_text(f"""
- hosts: slurm_master
  gather_facts: false
  vars_files: ["{ROLE}/defaults/main.yml"]
  tasks:
    - ansible.builtin.template:
        src: "{ROLE}/templates/slurm.conf.j2"
        dest: "{out}"
        mode: "0600"
""")
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    result = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in out.read_text().splitlines() if line and not line.startswith("#")]


def settings(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines if not line.startswith(("NodeName", "PartitionName")))


def test_static_cluster_has_no_power_saving(tmp_path):
    lines = render(tmp_path, {"slurm_master": ["frontend001"], "slurm_clients": ["compute001", "compute002"]})
    assert "NodeName=compute001 CPUs=2 RealMemory=1946 State=UNKNOWN" in lines
    assert [line for line in lines if line.startswith("PartitionName")] == [
        "PartitionName=main Nodes=compute001,compute002 Default=YES MaxTime=INFINITE State=UP"]
    assert not {"SuspendTime", "ResumeProgram", "PrivateData"} & set(settings(lines))


def test_elastic_range_is_declared_as_cloud_nodes(tmp_path):
    elastic = {"compute": {"names": ["compute002", "compute003", "compute004"], "idle": 120,
                           "groups": ["slurm_clients"], "cpus": 4, "memory_mb": 8192},
               "big": {"names": ["big001"], "idle": 45, "groups": ["slurm_clients"], "cpus": 8,
                       "memory_mb": 16384},
               "other": {"names": ["other001"], "idle": 30, "groups": ["ganglia_monitor"]}}
    # compute001 is static; compute003 was made by autoscale and is in the inventory too
    lines = render(tmp_path, {"slurm_master": ["frontend001"], "slurm_clients": ["compute001", "compute003"]},
                   {"elasticcluster_elastic": elastic})
    nodes = [line for line in lines if line.startswith("NodeName")]
    assert nodes == ["NodeName=compute001 CPUs=2 RealMemory=1946 State=UNKNOWN",
                     "NodeName=compute002 CPUs=4 RealMemory=7783 State=CLOUD",
                     "NodeName=compute003 CPUs=4 RealMemory=7783 State=CLOUD",
                     "NodeName=compute004 CPUs=4 RealMemory=7783 State=CLOUD",
                     "NodeName=big001 CPUs=8 RealMemory=15565 State=CLOUD"]
    assert [line for line in lines if line.startswith("PartitionName")] == [
        "PartitionName=main Nodes=compute001,compute002,compute003,compute004,big001 Default=YES "
        "MaxTime=INFINITE State=UP"]
    conf = settings(lines)
    # the shortest idle time of a SLURM kind (not of the kind SLURM does not run on)
    assert conf["SuspendTime"] == "45"
    assert conf["SuspendExcNodes"] == "compute001"  # a static node is never powered down
    assert conf["ResumeProgram"] == conf["SuspendProgram"] == "/usr/local/sbin/elasticcluster-slurm-power"
    assert conf["PrivateData"] == "cloud" and conf["SlurmctldParameters"] == "idle_on_node_suspend"
    assert int(conf["ResumeTimeout"]) >= 600 and conf["TreeWidth"] == "65533"
