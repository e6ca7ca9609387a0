"""Baked images on real nodes of the local cloud, end to end through the CLI (issue 13).

One SLURM cluster: ``bake`` makes an image of each kind that holds the software
and none of the node's secrets (SSH host keys, munge key, first-boot marker,
slurmctld's state), while the node it was made from keeps working; a second
``bake`` replaces (and deletes) the kind's image; a node that ``resize`` adds
boots from the image with a host key of its own, joins SLURM and runs a job,
and the setup installs nothing on it while the nodes that were there only
learn of it (the task lists of Ansible's log);
``stop --keep-images`` keeps the images and names them, a new start of the
cluster boots every node from them, and ``stop`` deletes them.
"""
from __future__ import annotations

import json

import pytest

from tests.local.conftest import containers_of, exec_in

pytestmark = pytest.mark.slow


def images_of(docker, cluster: str) -> dict[str, str]:
    """The baked images of ``cluster``: tag -> image id."""
    found = docker.images.list(filters={"label": f"elasticcluster.cluster={cluster}"})
    return {tag: image.id for image in found for tag in image.tags}


def inside(docker, image: str, command: str) -> str:
    """The output of ``command`` in a throwaway container of ``image`` (not booted: no first boot)."""
    return docker.containers.run(image, ["sh", "-c", command], remove=True, network_disabled=True,
                                 entrypoint=[]).decode()


def state(local, name: str) -> dict:
    return json.loads((local.storage / name / "state.json").read_text())["cluster"]


def host_keys(local, name: str) -> dict[str, str]:
    return {n["name"]: n["extra"]["ssh_host_key"] for nodes in state(local, name)["nodes"].values() for n in nodes}


def tasks_run(local, name: str) -> dict[str, list[str]]:
    """From the last setup's Ansible log: host -> the tasks that ran on it (ok or changed)."""
    ran, task = {}, None
    for line in (local.storage / name / "ansible.log").read_text().splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line[line.index("[") + 1:line.index("]")]
            task = task if line.startswith("TASK") else f"handler {task}"
        elif line.startswith("PLAY "):
            task = None
        elif task and line.startswith(("ok: [", "changed: [")):
            host = line.split("[", 1)[1].split("]", 1)[0].split(" ")[0]
            ran.setdefault(host, []).append(task)
    return ran


INSTALLS = ("slurm_common : Install SLURM and munge", "mpi : Install Open MPI and the compilers",
            "nfs_client : Install the NFS client")


def srun(local, name: str, count: int) -> list[str]:
    result = local("ssh", name, "--", f"srun -N{count} hostname", timeout=300)
    assert result.returncode == 0, result.output
    return sorted(result.stdout.split())


LOOK = ("ls -A /etc/ssh; echo ---; ls -A /var/lib/elasticcluster; echo ---; ls -A /etc/munge; echo ---; "
        "wc -c < /etc/machine-id; echo ---; ls -A /var/lib/slurm/slurmctld 2>/dev/null; echo ---; "
        "ls /usr/sbin/slurmd /usr/sbin/slurmctld /usr/sbin/munged 2>/dev/null || true")


def test_bake_resize_keep_and_stop(local):
    name = "bake-e2e"
    docker = local.docker
    local.start("local-slurm", name)
    try:
        keys = host_keys(local, name)
        result = local("bake", name)
        assert result.returncode == 0, result.output
        compute, frontend = f"elasticcluster/baked-{name}-compute:1", f"elasticcluster/baked-{name}-frontend:1"
        assert result.stdout.splitlines() == [f"compute: {compute} (from compute001)",
                                              f"frontend: {frontend} (from frontend001)"]
        assert "moved to /run/elasticcluster-bake" in result.stderr
        assert set(images_of(docker, name)) == {compute, frontend}
        # the images hold the software, and no host key, munge key, first-boot marker or machine id
        for image, daemon in ((compute, "/usr/sbin/slurmd"), (frontend, "/usr/sbin/slurmctld")):
            ssh_files, marker, munge, machine_id, slurmctld_state, programs = inside(docker, image, LOOK).split("---\n")
            assert "ssh_host" not in ssh_files and "sshd_config" in ssh_files, ssh_files
            assert marker.strip() == "", marker
            assert munge.strip() == "", munge  # neither munge.key nor the master's mark that it made one
            assert machine_id.strip() == "0"
            assert slurmctld_state.strip() == ""
            assert daemon in programs and "munged" in programs
        # the nodes it was made from have everything back, and keep their host keys
        for container in containers_of(docker, name):
            code, out = exec_in(container, "ls /etc/ssh/ssh_host_ed25519_key /var/lib/elasticcluster/firstboot-done "
                                           "/etc/munge/munge.key && test ! -e /run/elasticcluster-bake && "
                                           "! systemctl list-timers --all | grep -q elasticcluster-bake")
            assert code == 0, (container.name, out)
        listed = local("list-nodes", name)
        assert listed.returncode == 0 and f"- compute image:     {compute} (baked from compute001)" in listed.stdout
        result = local("ssh", name, "-n", "compute001", "--", "hostname")  # host key checked
        assert result.returncode == 0 and result.stdout.strip() == "compute001", result.output
        assert host_keys(local, name) == keys
        assert srun(local, name, 2) == ["compute001", "compute002"]

        # baking a kind again replaces its image and deletes the old one
        result = local("bake", name, "--kind", "compute")
        assert result.returncode == 0, result.output
        compute = f"elasticcluster/baked-{name}-compute:2"
        assert result.stdout.splitlines() == [f"compute: {compute} (from compute001)"]
        assert set(images_of(docker, name)) == {compute, frontend}

        # a node added later boots from the image, with a host key of its own, and runs jobs
        result = local("resize", name, "-a", "1:compute", timeout=1500)
        assert result.returncode == 0, result.output
        assert f"1 new compute node(s) boot from baked image {compute}" in result.stderr
        [new] = [c for c in containers_of(docker, name) if c.name.endswith("compute003")]
        assert new.attrs["Config"]["Image"] == compute
        added = [n for n in state(local, name)["nodes"]["compute"] if n["name"] == "compute003"][0]
        assert added["image_id"] == compute and added["extra"]["baked"] is True
        new_keys = host_keys(local, name)
        assert new_keys["compute003"] not in keys.values()
        code, public = exec_in(new, "cat /etc/ssh/ssh_host_ed25519_key.pub")
        assert code == 0 and public.split()[1] == new_keys["compute003"].split()[1]
        # the setup installed nothing on the node from the image, and the nodes that were there only
        # learned of it (/etc/hosts, known hosts, slurm.conf and the restarts it asks)
        ran = tasks_run(local, name)
        assert not [t for t in ran["compute003"] if t in INSTALLS], ran["compute003"]
        for old in ("compute001", "compute002", "frontend001"):
            assert "common : List every node in /etc/hosts" in ran[old] and \
                "slurm_common : Write slurm.conf" in ran[old], (old, ran[old])
            assert not [t for t in ran[old] if t in INSTALLS or t.startswith(("slurm_client :", "mpi :"))], ran[old]
            assert len(ran[old]) < len(ran["compute003"]), (old, ran[old], ran["compute003"])
        print("tasks run in resize's setup:", {host: len(tasks) for host, tasks in sorted(ran.items())})
        assert srun(local, name, 3) == ["compute001", "compute002", "compute003"]
        # a second setup is whole again: every node but the baked one lists its packages, finds
        # them all there, and runs no package task
        result = local("setup", name, timeout=1500)
        assert result.returncode == 0, result.output
        ran = tasks_run(local, name)
        assert "common : List the installed packages" in ran["compute001"]
        assert "common : List the installed packages" not in ran["compute003"]
        assert not [t for host in ran for t in ran[host] if t in INSTALLS], ran
        assert "slurm_client : Run slurmd" in ran["compute003"] and "slurm_client : Run slurmd" in ran["compute001"]

        # stop --keep-images keeps them and names them
        result = local("stop", name, "--yes", "--keep-images")
        assert result.returncode == 0, result.output
        assert f"compute: {compute}" in result.stdout and f"frontend: {frontend}" in result.stdout
        assert containers_of(docker, name) == []
        assert set(images_of(docker, name)) == {compute, frontend}

        # a new start of the cluster boots every node from them
        started = local.start("local-slurm", name)
        assert f"2 compute node(s) boot from image {compute}" in started.stderr
        assert {c.name: c.attrs["Config"]["Image"] for c in containers_of(docker, name)} == {
            f"{name}-compute001": compute, f"{name}-compute002": compute, f"{name}-frontend001": frontend}
        assert srun(local, name, 2) == ["compute001", "compute002"]
    finally:
        result = local("stop", name, "--yes")
        assert result.returncode == 0, result.output
    assert containers_of(docker, name) == []
    assert images_of(docker, name) == {}
