"""The contract of a cluster store, the files each cluster owns, and the in-memory store.

A cluster's name becomes a folder name, so it is checked here, once, for every
way in (the command line, the API, a state file). Every file a cluster owns
(state, known_hosts, inventory, Ansible's fact cache and log) lives in one
folder that its store hands out (``files(name)``): ``STORAGE/NAME/`` for the
disk store (``repository.py``), a private temporary folder for the memory
store. Nothing else builds those paths.

This module imports no other part of elasticcluster but the exceptions, so
that the model (``cluster.py``) can use a memory store by default without an
import loop.
"""
from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from elasticcluster.exceptions import ClusterNotFound, ConfigurationError, StateFileError


class Cluster(Protocol):
    """What a store needs of a cluster (``cluster.Cluster``, which imports this module)."""

    name: str

    def to_dict(self) -> dict: ...

#: letters, digits, '.', '_', '+', '-'; starting with a letter or digit; at most 100 characters
CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


class InvalidClusterName(ConfigurationError, ValueError):
    """A cluster name that cannot be one (exit status 2; also a ValueError, as in the seed)."""


def check_cluster_name(name: str) -> str:
    """``name`` if it can name a cluster (and its storage folder); else InvalidClusterName."""
    if not isinstance(name, str) or not CLUSTER_NAME_RE.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 120 else f"{str(name)[:117]}..."
        raise InvalidClusterName(
            f"invalid cluster name {shown!r}: expected letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit, at most 100 characters")
    return name


@dataclass(frozen=True)
class ClusterFiles:
    """The folder a cluster owns and the files in it."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.folder / "inventory.json"

    @property
    def facts(self) -> Path:
        """Ansible's fact cache (a folder)."""
        return self.folder / "facts"

    @property
    def ansible_log(self) -> Path:
        return self.folder / "ansible.log"

    @property
    def autoscale_log(self) -> Path:
        return self.folder / "autoscale.log"

    def ensure(self) -> ClusterFiles:
        """Make the folder (mode 0700, whatever the umask) if it is missing."""
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            self.folder.chmod(0o700)
        return self


@dataclass(frozen=True)
class UnreadableCluster:
    """A state file that could not be loaded, and why."""

    name: str
    path: str
    reason: str


class AbstractClusterRepository(ABC):
    """The contract of a cluster store (seed 4.5.13)."""

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
        """Forget ``cluster`` and every file it owns."""

    def load_all(self) -> tuple[list[Cluster], list[UnreadableCluster]]:
        return self.get_all(), []

    def exists(self, name: str) -> bool:
        """Whether ``name`` is taken (a stored cluster that cannot be read counts)."""
        try:
            self.get(name)
        except ClusterNotFound:
            return False
        except StateFileError:
            return True
        return True

    def files(self, name: str) -> ClusterFiles:
        """The folder where cluster ``name`` keeps its files: by default a private temporary
        folder of this store, removed when the program ends."""
        with _PRIVATE_LOCK:
            root = getattr(self, "_private_folder", None)
            if root is None:
                root = Path(tempfile.mkdtemp(prefix="elasticcluster-"))
                self._private_folder = root
                atexit.register(shutil.rmtree, root, True)
        return ClusterFiles(root / check_cluster_name(name))

    def forget_files(self, name: str) -> None:
        """Remove what ``files(name)`` holds (a memory store's private folder)."""
        root = getattr(self, "_private_folder", None)
        if root is not None:
            shutil.rmtree(root / check_cluster_name(name), ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0):
        """Hold ``name`` for one operation; a no-op unless the store is shared between processes."""
        yield

    # -- images kept by `stop --keep-images` (the caller holds the cluster's lock) ---------

    def kept_images(self, name: str) -> dict:
        """The baked images (kind -> record) that ``stop --keep-images`` kept of cluster ``name``,
        for a new cluster of that name to start from."""
        return {kind: dict(record) for kind, record in self._kept_store().get(name, {}).items()}

    def keep_images(self, name: str, images: dict) -> None:
        """Remember ``images`` (kind -> record) for cluster ``name``, replacing what was kept."""
        if images:
            self._kept_store()[check_cluster_name(name)] = {k: dict(v) for k, v in images.items()}
        else:
            self._kept_store().pop(name, None)

    def forget_kept_images(self, name: str, ids: set[str] | None = None) -> None:
        """Forget the kept images of ``name`` (only those of ``ids``, when given)."""
        kept = self.kept_images(name)
        if not kept:
            return
        self.keep_images(name, {} if ids is None else
                         {kind: record for kind, record in kept.items() if record.get("id") not in ids})

    def _kept_store(self) -> dict:
        store = getattr(self, "_kept", None)
        if store is None:
            store = self._kept = {}
        return store


#: makes one private folder per store, whichever thread asks first
_PRIVATE_LOCK = threading.Lock()


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
        self.forget_files(cluster.name)
