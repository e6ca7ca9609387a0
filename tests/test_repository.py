"""The cluster state store (seed 4.5.13): DiskRepository and MemRepository.

Crashes, corrupt files and concurrent writers are produced for real: other
Python processes load, change and save clusters in the same storage folder.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import elasticcluster
from elasticcluster.cluster import Cluster
from elasticcluster.exceptions import ClusterLocked, ClusterNotFound, StateFileError
from elasticcluster.repository import (
    STATE_FORMAT,
    AbstractClusterRepository,
    ClusterRepository,
    DiskRepository,
    MemRepository,
)

PACKAGE = Path(elasticcluster.__file__).resolve().parent


def make_cluster(repo, name: str, computes: int = 2) -> Cluster:
    cluster = Cluster(name, repository=repo, template="slurm", cloud="hobbes", provider="ec2_boto",
                      ssh_to="frontend", user_key_name="elasticcluster")
    cluster.add_node("frontend", "ami-00000048", "gc3-user", "m1.small", "default")
    cluster.add_nodes("compute", computes, "ami-00000048", "gc3-user", "m1.small", "default")
    repo.save_or_update(cluster)
    return cluster


def run_python(code: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@pytest.fixture
def storage(tmp_path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def repo(storage) -> DiskRepository:
    return DiskRepository(storage)


# -- basics -------------------------------------------------------------------


def test_seed_names_and_contract():
    assert ClusterRepository is DiskRepository
    assert issubclass(DiskRepository, AbstractClusterRepository)
    assert issubclass(MemRepository, AbstractClusterRepository)
    with pytest.raises(TypeError):
        AbstractClusterRepository()  # abstract: get/get_all/save_or_update/delete
    # the public names of the seed's API are importable from the package
    assert elasticcluster.ClusterRepository is DiskRepository
    assert elasticcluster.MemRepository is MemRepository


def test_save_then_get_in_another_repository_object(repo, storage):
    saved = make_cluster(repo, "alpha", computes=3)
    saved.get_node_by_name("compute002").public_ips = ["192.0.2.7"]
    repo.save_or_update(saved)

    loaded = DiskRepository(storage).get("alpha")
    assert loaded is not saved
    assert loaded.to_dict() == saved.to_dict()
    assert [n.name for n in loaded.get_all_nodes()] == [
        "compute001", "compute002", "compute003", "frontend001"]
    assert loaded.get_node_by_name("compute002").public_ips == ["192.0.2.7"]
    assert isinstance(loaded.repository, DiskRepository)


def test_get_unknown_names_the_stored_clusters(repo):
    make_cluster(repo, "alpha")
    make_cluster(repo, "beta")
    with pytest.raises(ClusterNotFound) as err:
        repo.get("gamma")
    assert "gamma" in str(err.value)
    assert "alpha, beta" in str(err.value)


def test_get_on_missing_storage_folder(tmp_path):
    repo = DiskRepository(tmp_path / "nowhere")
    assert repo.get_all() == []
    assert repo.load_all() == ([], [])
    with pytest.raises(ClusterNotFound):
        repo.get("alpha")
    assert not (tmp_path / "nowhere").exists(), "reading must not create the storage folder"


def test_get_all_sorted_and_delete(repo, storage):
    for name in ("charlie", "alpha", "bravo"):
        make_cluster(repo, name)
    assert [c.name for c in repo.get_all()] == ["alpha", "bravo", "charlie"]
    repo.delete(repo.get("bravo"))
    assert not (storage / "bravo" / "state.json").exists()
    assert [c.name for c in repo.get_all()] == ["alpha", "charlie"]
    with pytest.raises(ClusterNotFound):
        repo.get("bravo")
    repo.delete(Cluster("never-saved"))  # deleting what is not stored is not an error


def test_default_storage_is_under_home(home):
    repo = DiskRepository()
    assert repo.storage_path == home / ".elasticcluster" / "storage"
    make_cluster(repo, "alpha")
    assert (home / ".elasticcluster" / "storage" / "alpha" / "state.json").is_file()


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/etc/passwd", ".hidden", "", "a b", "x" * 101])
def test_invalid_names_never_reach_the_file_system(repo, storage, name):
    with pytest.raises(ValueError, match="invalid cluster name"):
        repo.path_for(name)
    with pytest.raises(ValueError, match="invalid cluster name"):
        repo.get(name)
    with pytest.raises(ValueError, match="invalid cluster name"):
        with repo.lock(name):
            pass
    assert not storage.exists()
    assert not (storage.parent / "x.json").exists()


# -- the files ------------------------------------------------------------------


def test_file_and_folder_modes_even_with_a_permissive_umask(repo, storage):
    old = os.umask(0)
    try:
        make_cluster(repo, "alpha")
    finally:
        os.umask(old)
    assert stat.S_IMODE(storage.stat().st_mode) == 0o700
    assert stat.S_IMODE((storage / "alpha" / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((storage / ".locks").stat().st_mode) == 0o700
    assert stat.S_IMODE((storage / ".locks" / "alpha.lock").stat().st_mode) == 0o600


def test_state_file_is_readable_json_with_a_format(repo, storage):
    make_cluster(repo, "alpha")
    text = (storage / "alpha" / "state.json").read_text()
    data = json.loads(text)
    assert data["format"] == STATE_FORMAT == 1
    assert data["written_by"] == f"elasticcluster {elasticcluster.__version__}"
    assert data["cluster"]["name"] == "alpha"
    assert [n["name"] for n in data["cluster"]["nodes"]["compute"]] == ["compute001", "compute002"]
    assert text.count("\n") > 10, "human-readable: indented, one key a line"


def test_no_pickle_anywhere():
    imports = re.compile(r"^\s*(import|from)\s+(c?pickle|_pickle|shelve|dill|marshal)\b", re.M)
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    offenders = [str(p) for p in sources if imports.search(p.read_text())]
    assert offenders == []
    # nor as a string handed to importlib
    assert [str(p) for p in sources if re.search(r"import_module\(\s*['\"]c?pickle", p.read_text())] == []


def test_unknown_fields_from_a_future_minor_change_are_ignored(repo, storage):
    make_cluster(repo, "alpha")
    path = storage / "alpha" / "state.json"
    data = json.loads(path.read_text())
    data["cluster"]["nodes"]["compute"][0]["added_later"] = 42
    path.write_text(json.dumps(data))
    assert repo.get("alpha").get_node_by_name("compute001").name == "compute001"


# -- atomicity --------------------------------------------------------------------

CRASH_DURING_SAVE = """
    import os, sys
    from elasticcluster.repository import DiskRepository

    repo = DiskRepository(sys.argv[1])
    cluster = repo.get(sys.argv[2])
    for _ in range(5):
        cluster.add_node("compute", "ami-00000048", "gc3-user", "m1.large", "default")

    def die(src, dst):
        # the process dies between writing the new state and renaming it into place
        os._exit(1)

    os.replace = die
    repo.save_or_update(cluster)
    print("not reached")
"""


def test_crash_between_write_and_rename_keeps_the_old_state(repo, storage):
    make_cluster(repo, "alpha", computes=2)
    make_cluster(repo, "beta", computes=1)
    before = (storage / "alpha" / "state.json").read_bytes()

    proc = run_python(CRASH_DURING_SAVE, str(storage), "alpha")
    assert proc.returncode == 1, proc.stderr
    assert "not reached" not in proc.stdout

    # the old state is there, byte for byte, and loads
    assert (storage / "alpha" / "state.json").read_bytes() == before
    fresh = DiskRepository(storage)
    assert len(fresh.get("alpha").get_all_nodes()) == 3
    # the new state was written completely, but only to a hidden temporary file
    leftovers = [p for p in (storage / "alpha").iterdir() if p.name != "state.json"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".state.json.") and leftovers[0].suffix == ".tmp"
    assert len(json.loads(leftovers[0].read_text())["cluster"]["nodes"]["compute"]) == 7
    # which listing ignores: both clusters, nothing unreadable
    clusters, unreadable = fresh.load_all()
    assert [c.name for c in clusters] == ["alpha", "beta"]
    assert unreadable == []
    # the dead process's lock went with it: the next save goes through at once
    cluster = fresh.get("alpha")
    cluster.add_node("compute", "ami-00000048", "gc3-user", "m1.small", "default")
    with fresh.lock("alpha", timeout=0):
        fresh.save_or_update(cluster)
    assert [n.name for n in DiskRepository(storage).get("alpha").nodes["compute"]] == [
        "compute001", "compute002", "compute003"]
    # the next writer (who holds the lock: nobody else can be writing) removed the leftover
    assert sorted(p.name for p in (storage / "alpha").iterdir()) == ["state.json"]


def test_failed_write_removes_its_temporary_file(repo, storage):
    cluster = make_cluster(repo, "alpha")
    before = (storage / "alpha" / "state.json").read_bytes()
    cluster.extra["unserialisable"] = object()  # json.dump fails half-way through
    with pytest.raises(TypeError):
        repo.save_or_update(cluster)
    assert (storage / "alpha" / "state.json").read_bytes() == before
    assert sorted(p.name for p in storage.iterdir()) == [".locks", "alpha"]
    assert sorted(p.name for p in (storage / "alpha").iterdir()) == ["state.json"]


# -- corrupt and unreadable files ---------------------------------------------------

CORRUPT = {
    "invalid-json": b'{"format": 1, "cluster": {"name": "bad", "nodes": {',
    "not-utf8": b"\xff\xfe\x00garbage",
    "no-format": json.dumps({"cluster": {"name": "bad", "nodes": {}}}).encode(),
    "json-list": b"[1, 2, 3]\n",
    "newer-format": json.dumps({"format": STATE_FORMAT + 1, "cluster": {"name": "bad", "nodes": {}}}).encode(),
    "wrong-name-inside": json.dumps({"format": 1, "cluster": {"name": "alpha", "nodes": {}}}).encode(),
    "no-cluster": json.dumps({"format": 1}).encode(),
    "bad-node": json.dumps({"format": 1, "cluster": {"name": "bad", "nodes": {"compute": [{"x": 1}]}}}).encode(),
}
EXPECTED_REASON = {
    "invalid-json": "not valid JSON",
    "not-utf8": "not valid JSON",
    "no-format": "no 'format' field",
    "json-list": "no 'format' field",
    "newer-format": "newer elasticcluster",
    "wrong-name-inside": "holds cluster 'alpha'",
    "no-cluster": "unexpected content",
    "bad-node": "unexpected content",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_is_reported_alone_and_left_untouched(repo, storage, kind):
    make_cluster(repo, "alpha")
    make_cluster(repo, "zulu")
    bad = storage / "bad" / "state.json"
    bad.parent.mkdir()
    bad.write_bytes(CORRUPT[kind])

    clusters, unreadable = repo.load_all()
    assert [c.name for c in clusters] == ["alpha", "zulu"]
    assert [(u.name, u.path) for u in unreadable] == [("bad", str(bad))]
    assert EXPECTED_REASON[kind] in unreadable[0].reason
    assert [c.name for c in repo.get_all()] == ["alpha", "zulu"]

    with pytest.raises(StateFileError) as err:
        repo.get("bad")
    assert err.value.path == str(bad)
    assert str(bad) in str(err.value) and EXPECTED_REASON[kind] in str(err.value)

    # saving other clusters does not touch it
    repo.save_or_update(repo.get("alpha"))
    assert bad.read_bytes() == CORRUPT[kind]


def test_directory_in_place_of_a_state_file(repo, storage):
    # we run as root, so mode 000 would not stop us reading: a directory does
    make_cluster(repo, "alpha")
    (storage / "bad" / "state.json").mkdir(parents=True)
    clusters, unreadable = repo.load_all()
    assert [c.name for c in clusters] == ["alpha"]
    assert [u.name for u in unreadable] == ["bad"]
    assert "cannot be read" in unreadable[0].reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway; "
                    "test_directory_in_place_of_a_state_file covers unreadable files")
def test_mode_000_state_file(repo, storage):
    make_cluster(repo, "alpha")
    make_cluster(repo, "bad")
    (storage / "bad" / "state.json").chmod(0)
    clusters, unreadable = repo.load_all()
    assert [c.name for c in clusters] == ["alpha"]
    assert [u.name for u in unreadable] == ["bad"]
    assert "cannot be read" in unreadable[0].reason


def test_listing_ignores_foreign_files(repo, storage):
    make_cluster(repo, "alpha")
    (storage / "notes.txt").write_text("mine")
    (storage / ".alpha.abc123.tmp").write_text("{half")
    (storage / ".hidden").mkdir()
    (storage / ".hidden" / "state.json").write_text("{}")
    (storage / "empty-folder").mkdir()
    (storage / ".alpha.deleted-x1y2").mkdir()
    clusters, unreadable = repo.load_all()
    assert [c.name for c in clusters] == ["alpha"]
    assert unreadable == []


# -- locking ------------------------------------------------------------------------

WRITER = """
    import sys, time
    from elasticcluster.repository import DiskRepository

    storage, name, count, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    repo = DiskRepository(storage)
    for i in range(count):
        with repo.lock(name):
            cluster = repo.get(name)
            time.sleep(0.002)  # widen the read-modify-write window: without the lock updates get lost
            cluster.add_node("compute", "ami-00000048", "gc3-user", "m1.small", "default",
                             writer=f"{tag}-{i}")
            repo.save_or_update(cluster)
"""


def test_concurrent_writers_lose_no_update(repo, storage):
    make_cluster(repo, "shared", computes=0)
    writers, per_writer = 4, 20
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(storage), "shared",
                               str(per_writer), f"w{w}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for w in range(writers)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    cluster = DiskRepository(storage).get("shared")
    computes = cluster.nodes["compute"]
    assert len(computes) == writers * per_writer
    assert [n.name for n in computes] == [f"compute{i:03d}" for i in range(1, writers * per_writer + 1)]
    assert sorted(n.extra["writer"] for n in computes) == sorted(
        f"w{w}-{i}" for w in range(writers) for i in range(per_writer))
    assert sorted(p.name for p in storage.iterdir()) == [".locks", "shared"]
    assert sorted(p.name for p in (storage / "shared").iterdir()) == ["state.json"]


HOLDER = """
    import sys
    from elasticcluster.repository import DiskRepository

    repo = DiskRepository(sys.argv[1])
    with repo.lock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()  # hold the lock until the test says so
"""


def test_lock_times_out_naming_the_holder(repo, storage):
    cluster = make_cluster(repo, "alpha")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(storage), "alpha"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        started = time.monotonic()
        with pytest.raises(ClusterLocked) as err:
            with repo.lock("alpha", timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3
        assert f"pid {holder.pid}" in str(err.value)
        assert "alpha" in str(err.value)
        # other clusters are not held
        with repo.lock("beta", timeout=0):
            pass
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    with repo.lock("alpha", timeout=0):  # released with the holder
        repo.save_or_update(cluster)


def test_save_waits_for_the_lock_holder(repo, storage):
    cluster = make_cluster(repo, "alpha")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(storage), "alpha"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ClusterLocked):
            with repo.lock("alpha", timeout=0.2):
                repo.save_or_update(cluster)
    finally:
        holder.communicate("\n", timeout=30)


PROBE = """
    import sys
    from elasticcluster.exceptions import ClusterLocked
    from elasticcluster.repository import DiskRepository

    try:
        with DiskRepository(sys.argv[1]).lock(sys.argv[2], timeout=0.2):
            print("free")
    except ClusterLocked as err:
        print("held:", err)
"""


def test_lock_is_reentrant_within_one_process(repo, storage):
    cluster = make_cluster(repo, "alpha")
    with repo.lock("alpha"):
        with repo.lock("alpha", timeout=0):  # would time out at once if it were not re-entrant
            cluster.add_node("compute", "ami-00000048", "gc3-user", "m1.small", "default")
            repo.save_or_update(cluster)  # takes the lock a third time
        # leaving the inner block does not release the outer one
        probe = run_python(PROBE, str(storage), "alpha")
        assert probe.stdout.startswith("held:"), probe.stdout + probe.stderr
        assert f"pid {os.getpid()}" in probe.stdout
    probe = run_python(PROBE, str(storage), "alpha")
    assert probe.stdout.strip() == "free", probe.stdout + probe.stderr
    assert len(DiskRepository(storage).get("alpha").nodes["compute"]) == 3


# -- MemRepository ------------------------------------------------------------------


def test_mem_repository_basics():
    repo = MemRepository()
    assert repo.get_all() == []
    with pytest.raises(ClusterNotFound, match="zulu"):
        repo.get("zulu")
    zulu = make_cluster(repo, "zulu")
    alpha = make_cluster(repo, "alpha")
    assert repo.get("zulu") is zulu
    assert repo.get_all() == [alpha, zulu]
    assert repo.load_all() == ([alpha, zulu], [])
    with repo.lock("alpha"), repo.lock("alpha"):
        repo.save_or_update(alpha)
    repo.delete(zulu)
    assert repo.get_all() == [alpha]
    repo.delete(zulu)


def test_a_cluster_without_repository_lives_in_memory():
    cluster = Cluster("alpha")
    assert isinstance(cluster.repository, MemRepository)
    cluster.add_node("frontend", "ami-1", "user", "m1.small", None)
    cluster.save()
    assert cluster.repository.get("alpha") is cluster
    assert Cluster("beta").repository is not cluster.repository


# -- the layout before one folder per cluster -------------------------------------------

#: a cluster stored by elasticcluster before the per-cluster folders (commit 3dcb096), as its
#: DiskRepository, write_known_hosts and write_inventory wrote it, with a fact cache and a log
OLD_LAYOUT = Path(__file__).resolve().parent / "data" / "old-layout-storage"
OLD_FILES = {"old-slurm.json": "state.json", "old-slurm.known_hosts": "known_hosts",
             "old-slurm.inventory.json": "inventory.json", "old-slurm.ansible.log": "ansible.log"}


def old_layout(storage: Path) -> dict[str, bytes]:
    """Copy the old-layout cluster into ``storage`` with the modes it had; its files' bytes."""
    storage.mkdir(mode=0o700, exist_ok=True)
    contents = {}
    for old in OLD_FILES:
        (storage / old).write_bytes((OLD_LAYOUT / old).read_bytes())
        (storage / old).chmod(0o600)
        contents[old] = (OLD_LAYOUT / old).read_bytes()
    facts = storage / "old-slurm.facts"
    facts.mkdir(mode=0o700)
    (facts / "frontend001").write_bytes((OLD_LAYOUT / "old-slurm.facts" / "frontend001").read_bytes())
    (facts / "frontend001").chmod(0o644)  # Ansible's fact cache, as the old runs left it
    return contents


def assert_moved(storage: Path, contents: dict[str, bytes]) -> None:
    folder = storage / "old-slurm"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted([*OLD_FILES.values(), "facts"])
    for old, new in OLD_FILES.items():
        assert (folder / new).read_bytes() == contents[old], new
        assert stat.S_IMODE((folder / new).stat().st_mode) == 0o600, new
        assert not (storage / old).exists(), old
    assert not (storage / "old-slurm.facts").exists()
    assert stat.S_IMODE((folder / "facts").stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "facts" / "frontend001").stat().st_mode) == 0o600
    assert sorted(p.name for p in storage.iterdir()) == [".locks", "new-one", "old-slurm"]


def test_old_layout_moves_into_its_folder_on_first_use_and_lists_alone(cli, storage):
    contents = old_layout(storage)
    make_cluster(DiskRepository(storage), "new-one")
    # the old inventory beside the state file was listed as a cluster 'old-slurm.inventory'
    result = cli("-s", str(storage), "list", "--json")
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["clusters"]] == ["new-one", "old-slurm"]
    assert data["unreadable"] == [] and "ERROR" not in result.stderr
    assert_moved(storage, contents)
    # and it works as any cluster: its nodes, and the known_hosts its commands use
    result = cli("-s", str(storage), "list-nodes", "old-slurm", "--json")
    assert result.returncode == 0, result.output
    nodes = json.loads(result.stdout)["cluster"]["nodes"]
    assert [n["name"] for n in nodes] == ["compute001", "compute002", "frontend001"]
    from elasticcluster import ssh

    cluster = DiskRepository(storage).get("old-slurm")
    assert ssh.known_hosts_path(cluster) == storage / "old-slurm" / "known_hosts"
    assert f"UserKnownHostsFile={storage / 'old-slurm' / 'known_hosts'}" in ssh.ssh_options(
        cluster, cluster.get_node_by_name("compute001"))


def test_old_layout_cluster_is_moved_by_get_save_and_delete(storage):
    contents = old_layout(storage)
    repo = DiskRepository(storage)
    make_cluster(repo, "new-one")
    cluster = repo.get("old-slurm")
    assert_moved(storage, contents)
    cluster.add_node("compute", "ami-00000048", "gc3-user", "m1.small", "default")
    repo.save_or_update(cluster)
    assert [n.name for n in DiskRepository(storage).get("old-slurm").nodes["compute"]] == [
        "compute001", "compute002", "compute003"]
    repo.delete(cluster)
    assert sorted(p.name for p in storage.iterdir()) == [".locks", "new-one"]


MOVE_THEN_DIE = """
    import os, sys
    from elasticcluster.repository import DiskRepository

    rename = os.rename

    def die(src, dst):
        if os.path.basename(str(src)).startswith(".old-slurm.moving-") and sys.argv[2] == "before":
            os._exit(1)  # the staging folder is complete, the rename never happens
        rename(src, dst)
        if sys.argv[2] == "after":
            os._exit(1)  # renamed into place, the old files not removed yet

    os.rename = die
    DiskRepository(sys.argv[1]).get("old-slurm")
    print("not reached")
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_old_layout_move_killed_at_its_rename_is_finished_by_the_next_use(storage, when):
    contents = old_layout(storage)
    make_cluster(DiskRepository(storage), "new-one")
    proc = run_python(MOVE_THEN_DIE, str(storage), when)
    assert proc.returncode == 1 and "not reached" not in proc.stdout, proc.stderr
    if when == "before":  # nothing moved: the old files are whole, a staging folder is left
        assert all((storage / old).read_bytes() == data for old, data in contents.items())
        assert any(p.name.startswith(".old-slurm.moving-") for p in storage.iterdir())
        assert not (storage / "old-slurm").exists()
    else:  # both layouts hold the cluster: the folder wins
        assert (storage / "old-slurm" / "state.json").read_bytes() == contents["old-slurm.json"]
        assert (storage / "old-slurm.json").exists()
    clusters, unreadable = DiskRepository(storage).load_all()
    assert [c.name for c in clusters] == ["new-one", "old-slurm"] and unreadable == []
    assert_moved(storage, contents)


def test_old_layout_first_used_by_several_commands_at_once(storage):
    contents = old_layout(storage)
    make_cluster(DiskRepository(storage), "new-one")
    lister = """
        import sys
        from elasticcluster.repository import DiskRepository
        clusters, unreadable = DiskRepository(sys.argv[1]).load_all()
        print(",".join(c.name for c in clusters), len(unreadable))
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(lister), str(storage)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split() == ["new-one,old-slurm", "0"], (out, err)
    assert_moved(storage, contents)


# -- images kept by `stop --keep-images` ---------------------------------------------------------

KEPT = {"compute": {"id": "ami-1", "name": "elasticcluster-x-compute-1", "from": "compute001", "made": 1,
                    "base": "ami-0", "template": "slurm"},
        "frontend": {"id": "ami-2", "name": "elasticcluster-x-frontend-1", "from": "frontend001", "made": 1,
                     "base": "ami-0", "template": "slurm"}}


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_kept_images_outlive_their_cluster_until_forgotten(storage, kind):
    repo = DiskRepository(storage) if kind == "disk" else MemRepository()
    cluster = Cluster("x", repository=repo)
    cluster.save()
    assert repo.kept_images("x") == {}
    repo.keep_images("x", KEPT)
    repo.delete(cluster)
    assert repo.kept_images("x") == KEPT and repo.kept_images("y") == {}
    if kind == "disk":
        assert [c.name for c in DiskRepository(storage).get_all()] == []  # not a cluster
        path = storage / ".kept-images" / "x.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert DiskRepository(storage).kept_images("x") == KEPT
    repo.forget_kept_images("x", {"ami-1"})
    assert repo.kept_images("x") == {"frontend": KEPT["frontend"]}
    repo.forget_kept_images("x")
    assert repo.kept_images("x") == {}
    if kind == "disk":
        assert not (storage / ".kept-images" / "x.json").exists()


def test_an_unreadable_kept_images_file_is_a_warning_and_left_alone(storage, caplog):
    repo = DiskRepository(storage)
    repo.keep_images("x", KEPT)
    path = storage / ".kept-images" / "x.json"
    path.write_text("{not json")
    assert repo.kept_images("x") == {}
    assert "cannot be read" in caplog.text
    assert path.read_text() == "{not json"
