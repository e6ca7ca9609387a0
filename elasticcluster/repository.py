"""Where started clusters are remembered (seed 4.5.13).

``DiskRepository`` (also named ``ClusterRepository``, as in the seed) keeps
one JSON file per cluster in the storage folder: human-readable, with a
format version, written atomically (temporary file, fsync, rename) with mode
0600. A per-cluster lock file keeps two commands from interleaving their
writes. A file that cannot be read is reported for its cluster alone and is
never overwritten. ``MemRepository`` keeps clusters in memory only.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from elasticcluster.cluster import Cluster, check_cluster_name
from elasticcluster.exceptions import ClusterLocked, ClusterNotFound, StateFileError

log = logging.getLogger("elasticcluster")

#: version of the state file layout; bump it with a migration in ``_upgrade``
STATE_FORMAT = 1
DEFAULT_STORAGE_PATH = Path("~/.elasticcluster/storage")


@dataclass(frozen=True)
class UnreadableCluster:
    """A state file that could not be loaded, and why."""

    name: str
    path: str
    reason: str


class AbstractClusterRepository(ABC):
    """The contract of a cluster store."""

    @abstractmethod
    def get(self, name: str) -> Cluster:
        """The cluster ``name``; raises ClusterNotFound or StateFileError."""

    @abstractmethod
    def get_all(self) -> list[Cluster]:
        """Every stored cluster that can be read (the others are logged)."""

    @abstractmethod
    def save_or_update(self, cluster: Cluster) -> None:
        """Store ``cluster``, replacing what was stored under its name."""

    @abstractmethod
    def delete(self, cluster: Cluster) -> None:
        """Forget ``cluster``."""

    def load_all(self) -> tuple[list[Cluster], list[UnreadableCluster]]:
        return self.get_all(), []

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0):
        """Hold ``name`` for one command; a no-op unless the store is shared."""
        yield


class MemRepository(AbstractClusterRepository):
    """Clusters in memory: gone when the program ends (their nodes may not be)."""

    def __init__(self):
        self.clusters: dict[str, Cluster] = {}

    def get(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise ClusterNotFound(f"no cluster named '{name}'") from None

    def get_all(self) -> list[Cluster]:
        return [self.clusters[n] for n in sorted(self.clusters)]

    def save_or_update(self, cluster: Cluster) -> None:
        self.clusters[cluster.name] = cluster

    def delete(self, cluster: Cluster) -> None:
        self.clusters.pop(cluster.name, None)


class DiskRepository(AbstractClusterRepository):
    """One ``NAME.json`` per cluster under ``storage_path``."""

    suffix = ".json"

    def __init__(self, storage_path: str | os.PathLike = DEFAULT_STORAGE_PATH):
        self.storage_path = Path(os.path.expanduser(str(storage_path)))

    def path_for(self, name: str) -> Path:
        return self.storage_path / f"{check_cluster_name(name)}{self.suffix}"

    # -- reading -------------------------------------------------------------

    def get(self, name: str) -> Cluster:
        path = self.path_for(name)
        if not path.exists():
            known = ", ".join(self._names()) or "none"
            raise ClusterNotFound(
                f"no cluster named '{name}' in {self.storage_path} (stored clusters: {known})")
        return self._read(path)

    def get_all(self) -> list[Cluster]:
        clusters, unreadable = self.load_all()
        for bad in unreadable:
            log.warning("cluster '%s': %s", bad.name, bad.reason)
        return clusters

    def load_all(self) -> tuple[list[Cluster], list[UnreadableCluster]]:
        clusters, unreadable = [], []
        for name in self._names():
            path = self.path_for(name)
            try:
                clusters.append(self._read(path))
            except StateFileError as err:
                unreadable.append(UnreadableCluster(name, str(path), err.reason))
        return clusters, unreadable

    def _names(self) -> list[str]:
        try:
            entries = os.listdir(self.storage_path)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StateFileError(str(self.storage_path), err.strerror or str(err)) from err
        names = []
        for entry in entries:
            if entry.endswith(self.suffix) and not entry.startswith("."):
                name = entry[: -len(self.suffix)]
                try:
                    check_cluster_name(name)
                except ValueError:
                    continue
                names.append(name)
        return sorted(names)

    def _read(self, path: Path) -> Cluster:
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except OSError as err:
            raise StateFileError(str(path), f"cannot be read: {err.strerror or err}") from err
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StateFileError(str(path), f"is corrupt (not valid JSON: {err}); it was left as it is, "
                                            "move it away to forget this cluster") from err
        try:
            data = _upgrade(data)
            cluster = Cluster.from_dict(data["cluster"], repository=self)
        except StateFileError as err:
            raise StateFileError(str(path), err.reason) from err
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StateFileError(str(path), f"is corrupt (unexpected content: {err!r}); it was left "
                                            "as it is, move it away to forget this cluster") from err
        if cluster.name != path.name[: -len(self.suffix)]:
            raise StateFileError(str(path), f"holds cluster '{cluster.name}', not the one its name says")
        return cluster

    # -- writing -------------------------------------------------------------

    def save_or_update(self, cluster: Cluster) -> None:
        with self.lock(cluster.name):
            self._write(self.path_for(cluster.name), {
                "format": STATE_FORMAT,
                "written_by": _version(),
                "cluster": cluster.to_dict(),
            })
        cluster.repository = self

    def _write(self, path: Path, data: dict) -> None:
        self._ensure_folder()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.storage_path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=2, sort_keys=True)
                stream.write("\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.storage_path)

    #: files kept beside a cluster's state, removed with it
    companions = (".known_hosts", ".inventory.json", ".ansible.log")

    def delete(self, cluster: Cluster) -> None:
        """Forget ``cluster``: its state file and what is kept beside it (known_hosts,
        inventory, Ansible's fact cache and log)."""
        with self.lock(cluster.name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path_for(cluster.name))
            for suffix in self.companions:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.storage_path / f"{cluster.name}{suffix}")
            shutil.rmtree(self.storage_path / f"{cluster.name}.facts", ignore_errors=True)
            _fsync_dir(self.storage_path)

    def _ensure_folder(self) -> None:
        self.storage_path.mkdir(parents=True, exist_ok=True, mode=0o700)

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


def _upgrade(data: dict) -> dict:
    if not isinstance(data, dict) or "format" not in data:
        raise StateFileError("", "is not an elasticcluster state file (no 'format' field)")
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
