"""Loaded by the CLI processes of the start benchmarks (on their ``PYTHONPATH``): bench-only stubs.

The nodes of moto and of ``bench/slow_driver.py`` have addresses that nobody
may contact (moto's belong to other people; the slow driver's are made up),
so ``start`` cannot wait for SSH on them. Here ``elasticcluster.ssh`` is
patched, in the benchmark's processes only, so that:

* ``wait_for_ssh`` answers "ready" for every node at once (no socket is
  opened), announcing itself with "(benchmark: SSH not probed)" on the
  progress output, which the benchmarks check;
* ``connection`` refuses to build any SSH connection, as a second guard.

The figures are therefore those of the cloud part of ``start --no-setup``:
create the nodes, wait until they run with an address.

With ``ELASTICCLUSTER_BENCH_POLL_SCALE=F`` the poll intervals of
``elasticcluster.lifecycle.wait_instances`` (``POLL_INTERVAL``: 0.5 s, growing
1.5x up to 5 s) are multiplied by F, for a benchmark that scales every time
of its fake cloud (API latency, boot time) by F. With
``ELASTICCLUSTER_BENCH_MOTO=1`` it also applies the moto test fixture's fix of
libcloud's EC2 XML namespace (``tests/cloud/moto_site/sitecustomize.py``;
only one ``sitecustomize`` module is imported per process, so this one loads
that one).
"""
import importlib.abc
import importlib.machinery
import os
import runpy
import sys

_TARGETS = ("elasticcluster.ssh", "elasticcluster.lifecycle")
MARK = "(benchmark: SSH not probed)"

if os.environ.get("ELASTICCLUSTER_BENCH_MOTO") == "1":
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    runpy.run_path(os.path.join(_root, "tests", "cloud", "moto_site", "sitecustomize.py"))


def _patch(module):
    if module.__name__ == "elasticcluster.lifecycle":
        scale = float(os.environ.get("ELASTICCLUSTER_BENCH_POLL_SCALE") or 1)
        module.POLL_INTERVAL = tuple(value * scale for value in module.POLL_INTERVAL)
        return

    def wait_for_ssh(cluster, nodes, *, probe_timeout, timeout, max_workers=32, interval=0.25,
                     event=lambda message: None):
        event(f"{len(nodes)} node(s) taken as accepting SSH {MARK}")
        return {node.name: module.Probe(module.READY) for node in nodes}

    def connection(*args, **kwargs):
        raise RuntimeError(f"no SSH connection may be opened in a benchmark {MARK}")

    module.wait_for_ssh = wait_for_ssh
    module.connection = connection


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
