"""The folder of SSH's shared connections for Ansible fits a Unix socket, whatever HOME is.

ssh makes each control socket as ``FOLDER/HASH.RANDOM`` before renaming it; past 107 bytes
every connection fails ("too long for Unix domain socket"), as it did for the tests run
under pytest-xdist's longer temporary folders. Real sockets are bound here.
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from elasticcluster.playbook import control_path_dir


def bind_like_ssh(folder: str) -> None:
    """Bind a Unix socket at the longest path ssh makes in ``folder``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(os.path.join(folder, "0123456789.ABCDEFGHIJKLMNOP"))
    os.unlink(os.path.join(folder, "0123456789.ABCDEFGHIJKLMNOP"))


def test_a_short_home_keeps_ansibles_default(monkeypatch, tmp_path):
    home = Path("/tmp") / "ec-h"
    monkeypatch.setenv("HOME", str(home))
    assert control_path_dir() == str(home / ".ansible" / "cp")


def test_a_long_home_gets_a_private_short_folder(monkeypatch, tmp_path):
    home = tmp_path / ("a-very-long-folder-name-" * 4) / "home"
    monkeypatch.setenv("HOME", str(home))
    runtime = Path(tempfile.mkdtemp(prefix="ec-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    try:
        folder = control_path_dir()
        assert folder == str(runtime / f"elasticcluster-ssh-{os.getuid()}")
        assert Path(folder).stat().st_mode & 0o777 == 0o700
        bind_like_ssh(folder)
        # a folder of that name that others could write is never used
        Path(folder).chmod(0o777)
        other = control_path_dir()
        assert other != folder and Path(other).stat().st_mode & 0o077 == 0
        bind_like_ssh(other)
    finally:
        for path in sorted(runtime.rglob("*"), reverse=True):
            path.rmdir()
        runtime.rmdir()
