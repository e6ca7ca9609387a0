"""Where started clusters are remembered (seed 4.5.13): the storage folder.

``DiskRepository`` (also named ``ClusterRepository``, as in the seed) gives
each cluster a folder of its own, ``STORAGE/NAME/``, and owns every path in
it: the state file ``state.json`` (human-readable JSON with a format version,
written atomically: temporary file, fsync, rename; mode 0600), the
``known_hosts`` of its nodes, the Ansible ``inventory.json``, the fact cache
``facts/`` and ``ansible.log``. Folders are 0700, files 0600. A per-cluster
lock (``STORAGE/.locks/NAME.lock``) keeps two commands from interleaving
their writes. A state file that cannot be read is reported for its cluster
alone and never overwritten.

Clusters stored by elasticcluster before this layout (``STORAGE/NAME.json``
with ``NAME.known_hosts``, ``NAME.inventory.json``, ``NAME.ansible.log`` and
``NAME.facts/`` beside it) are moved into their folder on first use, all at
once: the folder is assembled under a temporary name and renamed into place,
so an interruption leaves either the old files or the new folder.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

from elasticcluster.cluster import Cluster
from elasticcluster.exceptions import ClusterLocked, ClusterNotFound, StateFileError
from elasticcluster.paths import DEFAULT_STORAGE
from elasticcluster.store import (
    AbstractClusterRepository,
    ClusterFiles,
    MemRepository,
    UnreadableCluster,
    check_cluster_name,
)

log = logging.getLogger("elasticcluster")

#: version of the state file's content; bump it with a migration in ``_upgrade``
STATE_FORMAT = 1
DEFAULT_STORAGE_PATH = Path(DEFAULT_STORAGE)

#: the layout before one folder per cluster: old file suffix -> the file's new name
_OLD_LAYOUT = {".json": "state.json", ".known_hosts": "known_hosts", ".inventory.json": "inventory.json",
               ".ansible.log": "ansible.log", ".facts": "facts"}

__all__ = ["STATE_FORMAT", "DEFAULT_STORAGE_PATH", "AbstractClusterRepository", "ClusterFiles",
           "ClusterRepository", "DiskRepository", "MemRepository", "UnreadableCluster"]


class DiskRepository(AbstractClusterRepository):
    """One folder per cluster under ``storage_path``."""

    def __init__(self, storage_path: str | os.PathLike = DEFAULT_STORAGE_PATH):
        self.storage_path = Path(os.path.expanduser(str(storage_path)))

    def files(self, name: str) -> ClusterFiles:
        return ClusterFiles(self.storage_path / check_cluster_name(name))

    def path_for(self, name: str) -> Path:
        """The state file of cluster ``name``."""
        return self.files(name).state

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists() or self._old(name, ".json").exists()

    # -- reading -------------------------------------------------------------

    def get(self, name: str) -> Cluster:
        path = self._current_state(name)
        if path is None:
            known = ", ".join(self._names()) or "none"
            raise ClusterNotFound(
                f"no cluster named '{name}' in {self.storage_path} (stored clusters: {known})")
        try:
            return self._read(path, name)
        except StateFileError:
            current = self.path_for(name)
            if path == current or os.path.lexists(path) or not os.path.lexists(current):
                raise
            return self._read(current, name)  # moved into its folder while we read

    def get_all(self) -> list[Cluster]:
        clusters, unreadable = self.load_all()
        for bad in unreadable:
            log.warning("cluster '%s': %s", bad.name, bad.reason)
        return clusters

    def load_all(self) -> tuple[list[Cluster], list[UnreadableCluster]]:
        clusters, unreadable = [], []
        for name in self._names():
            try:
                clusters.append(self.get(name))
            except StateFileError as err:
                unreadable.append(UnreadableCluster(name, err.path, err.reason))
            except ClusterNotFound:  # stopped while we listed
                continue
        return clusters, unreadable

    def _names(self) -> list[str]:
        """The stored clusters: folders holding a state file, and state files of the old layout."""
        try:
            entries = set(os.listdir(self.storage_path))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StateFileError(str(self.storage_path), err.strerror or str(err)) from err
        names = set()
        for entry in entries:
            if entry.startswith("."):
                continue
            if entry.endswith(".json"):
                name = entry[: -len(".json")]
                owner = name[: -len(".inventory")] if name.endswith(".inventory") else None
                if owner and (f"{owner}.json" in entries or owner in entries):
                    continue  # an old layout's inventory beside its cluster's state file
            elif os.path.lexists(self.storage_path / entry / "state.json"):
                name = entry
            else:
                continue
            try:
                names.add(check_cluster_name(name))
            except ValueError:
                continue
        return sorted(names)

    def _current_state(self, name: str) -> Path | None:
        """The state file of ``name`` after moving an old layout into its folder; None if none."""
        path = self.path_for(name)
        if self._old(name, ".json").exists():
            try:
                with self.lock(name, timeout=10):
                    self._migrate(name)
            except ClusterLocked:
                # another command holds the cluster (and will move it): read the old file meanwhile
                return self._old(name, ".json")
        return path if os.path.lexists(path) else None

    def _read(self, path: Path, name: str) -> Cluster:
        data = _load_json(path)
        try:
            data = _upgrade(data)
            cluster = Cluster.from_dict(data["cluster"], repository=self)
        except StateFileError as err:
            raise StateFileError(str(path), err.reason) from err
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StateFileError(str(path), f"is corrupt (unexpected content: {err!r}); it was left "
                                            "as it is, move it away to forget this cluster") from err
        if cluster.name != name:
            raise StateFileError(str(path), f"holds cluster '{cluster.name}', not '{name}'")
        return cluster

    # -- writing -------------------------------------------------------------

    def save_or_update(self, cluster: Cluster) -> None:
        with self.lock(cluster.name):
            self._migrate(cluster.name)
            files = self.files(cluster.name).ensure()
            _remove_stale_temporaries(files.folder)
            _write_atomically(files.state, {
                "format": STATE_FORMAT,
                "written_by": _version(),
                "cluster": cluster.to_dict(),
            })
        cluster.repository = self

    def delete(self, cluster: Cluster) -> None:
        """Forget ``cluster``: its folder goes at once (renamed away, then removed)."""
        with self.lock(cluster.name):
            self._migrate(cluster.name)
            folder = self.files(cluster.name).folder
            if folder.exists():
                doomed = Path(tempfile.mkdtemp(prefix=f".{cluster.name}.deleted-", dir=self.storage_path))
                os.rename(folder, doomed / "cluster")
                _fsync_dir(self.storage_path)
                shutil.rmtree(doomed, ignore_errors=True)
            _fsync_dir(self.storage_path)

    def forget_files(self, name: str) -> None:
        """Nothing to do: a cluster's files go with its folder (``delete``)."""

    # -- images kept by `stop --keep-images`: STORAGE/.kept-images/NAME.json ------------------

    def _kept_path(self, name: str) -> Path:
        return self.storage_path / ".kept-images" / f"{check_cluster_name(name)}.json"

    def kept_images(self, name: str) -> dict:
        path = self._kept_path(name)
        if not os.path.lexists(path):
            return {}
        try:
            data = _load_json(path)
            images = data["images"]
            return {str(kind): dict(record) for kind, record in images.items() if record.get("id")}
        except (StateFileError, KeyError, TypeError, ValueError, AttributeError) as err:
            log.warning("%s: cannot be read (%s); the images it names are not used", path,
                        getattr(err, "reason", err))
            return {}

    def keep_images(self, name: str, images: dict) -> None:
        path = self._kept_path(name)
        if not images:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        self._ensure_folder()
        path.parent.mkdir(exist_ok=True, mode=0o700)
        _write_atomically(path, {"format": STATE_FORMAT, "cluster": name, "images": images})

    def _ensure_folder(self) -> None:
        self.storage_path.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- the layout before one folder per cluster ------------------------------------

    def _old(self, name: str, suffix: str) -> Path:
        return self.storage_path / f"{check_cluster_name(name)}{suffix}"

    def _migrate(self, name: str) -> None:
        """Move cluster ``name`` from the old layout into its folder (the caller holds its lock)."""
        old_state = self._old(name, ".json")
        if not os.path.lexists(old_state):
            return
        files = self.files(name)
        for stale in self.storage_path.glob(f".{name}.moving-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if not os.path.lexists(files.state):
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.moving-", dir=self.storage_path))
            if files.folder.is_dir():  # files written before the first state (none are expected)
                for entry in files.folder.iterdir():
                    os.rename(entry, staging / entry.name)
                files.folder.rmdir()
            for suffix, new in _OLD_LAYOUT.items():
                _copy_private(self._old(name, suffix), staging / new)
            _fsync_dir(staging)
            os.rename(staging, files.folder)
            _fsync_dir(self.storage_path)
            log.info("cluster '%s': moved its files into %s", name, files.folder)
        for suffix in _OLD_LAYOUT:
            old = self._old(name, suffix)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        _fsync_dir(self.storage_path)

    # -- locking -------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 30.0):
        """Hold the cluster's lock file; re-entrant within this process.

        Waits up to ``timeout`` seconds for another command to finish, then
        raises ClusterLocked naming the process that holds it.
        """
        key = (str(self.storage_path), check_cluster_name(name))
        with _HELD_LOCK:
            held = _HELD.get(key)
            reentered = held is not None and held[1] == threading.get_ident()
            if reentered:
                held[2] += 1
        if reentered:
            try:
                yield
            finally:
                with _HELD_LOCK:
                    held[2] -= 1
            return
        self._ensure_folder()  # else mkdir(parents=True) below makes it with the umask's mode
        folder = self.storage_path / ".locks"
        folder.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(folder / f"{key[1]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                        raise ClusterLocked(
                            f"cluster '{name}' is in use by another elasticcluster command "
                            f"(pid {holder}); try again when it has finished") from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            with _HELD_LOCK:
                _HELD[key] = [fd, threading.get_ident(), 1]
            try:
                yield
            finally:
                with _HELD_LOCK:
                    del _HELD[key]
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


#: locks this process holds: (storage folder, cluster) -> [fd, thread, depth]; shared by all
#: DiskRepository objects, so that two of them on one folder do not wait for each other
_HELD: dict[tuple[str, str], list] = {}
_HELD_LOCK = threading.RLock()

#: the seed's name for the disk repository
ClusterRepository = DiskRepository


def _load_json(path: Path) -> dict:
    """The JSON of a state file; StateFileError for anything that is not a readable one."""
    try:
        # O_NONBLOCK: a FIFO in place of the file must not hang the command
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise StateFileError(str(path), f"cannot be read: {err.strerror or err}") from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StateFileError(str(path), "cannot be read: it is not a regular file (a folder, a FIFO, "
                                        "...); move it away to forget this cluster")
    with os.fdopen(fd, "rb") as stream:
        try:
            return json.loads(stream.read().decode("utf-8"))
        except OSError as err:
            raise StateFileError(str(path), f"cannot be read: {err.strerror or err}") from err
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            reason = "nested too deeply" if isinstance(err, RecursionError) else f"not valid JSON: {err}"
            raise StateFileError(str(path), f"is corrupt ({reason}); it was left as it is, "
                                            "move it away to forget this cluster") from None


def _write_atomically(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fchmod(stream.fileno(), 0o600)
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left (the caller holds the cluster's lock: none is live)."""
    for stale in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _copy_private(source: Path, target: Path) -> None:
    """Copy a file or folder of the old layout (if there), with modes 0600/0700."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
        for folder, _dirs, names in os.walk(target):
            os.chmod(folder, 0o700)
            for entry in names:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(folder, entry), 0o600)
    elif os.path.lexists(source):
        shutil.copyfile(source, target, follow_symlinks=False)
        with contextlib.suppress(OSError):
            os.chmod(target, 0o600)
        with open(target, "rb") as stream:
            os.fsync(stream.fileno())


def _upgrade(data: dict) -> dict:
    if not isinstance(data, dict) or "format" not in data:
        raise StateFileError("", "is not an elasticcluster state file (no 'format' field)")
    if not isinstance(data["format"], int):
        raise StateFileError("", f"has a format that is not a number ({data['format']!r})")
    if data["format"] > STATE_FORMAT:
        raise StateFileError("", f"was written by a newer elasticcluster (format {data['format']}, "
                                 f"this one reads up to {STATE_FORMAT}); upgrade elasticcluster")
    return data


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _version() -> str:
    from elasticcluster import __version__

    return f"elasticcluster {__version__}"
