"""Run part of a test in a private network namespace that holds only loopback.

moto gives its fake instances public addresses that belong to other people;
inside this namespace no packet to them can leave the machine. The calling
thread (pytest's main thread) enters a fresh namespace with ``unshare`` and
returns to the original one with ``setns``; processes and threads started
meanwhile stay in the private one.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess
import threading
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def available() -> tuple[bool, str]:
    """Whether this process may make network namespaces (root, or CAP_SYS_ADMIN)."""
    try:
        proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return False, "the unshare command (util-linux) is not installed"
    if proc.returncode != 0:
        return False, f"cannot make a network namespace: {proc.stderr.strip()}"
    return True, ""


@contextmanager
def private_network(any_address: bool = False):
    """Move this thread into a new network namespace with only ``lo`` (up).

    With ``any_address``, every IPv4 address is local in the namespace (a
    ``local`` route of 0.0.0.0/0 on ``lo``): a connection to a fake cloud
    address reaches a server of the test listening on 0.0.0.0, and nothing else.
    """
    original = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            if any_address:
                subprocess.run(["ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "local"],
                               check=True)
            interfaces = [name for _, name in socket.if_nameindex()]
            assert interfaces == ["lo"], f"private namespace has {interfaces}"
            yield
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
    finally:
        os.close(original)
