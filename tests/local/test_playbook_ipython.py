"""IPython parallel (ipyparallel) on real nodes of the local cloud: the bundled `local-ipython`
template (a controller, which also runs engines, and 2 workers; one engine per CPU of the flavor),
with the IPython shell and NumPy on every node."""
from __future__ import annotations

import json
import shlex

import pytest

from tests.local.conftest import assert_setup_changes_nothing

pytestmark = pytest.mark.slow

# run by the admin user on the controller: wait for the engines, then run a function on each
CLIENT = r'''
import json, socket, time
import ipyparallel as ipp
rc = ipp.Client()
deadline = time.monotonic() + 120
while len(rc.ids) < {engines} and time.monotonic() < deadline:
    time.sleep(1)
# right after a controller restart, a request may reach the schedulers before the engines
# have reconnected to them, and is lost: ask again rather than wait forever
for attempt in range(6):
    try:
        hosts = rc[:].apply_async(socket.gethostname).get(timeout=20)
        break
    except ipp.error.TimeoutError:
        continue
print(json.dumps({{"ids": rc.ids, "hosts": hosts}}))
'''


# run in the IPython shell (`ipython -c`) by the admin user on the controller: NumPy on every
# engine, a map over them
NUMPY_MAP = r'''
import json, time
import ipyparallel as ipp
rc = ipp.Client()
deadline = time.monotonic() + 120
while len(rc.ids) < 3 and time.monotonic() < deadline:
    time.sleep(1)
view = rc[:]
with view.sync_imports():
    import numpy
squares = view.map_sync(lambda x: int(numpy.square(numpy.int64(x))), range(12))
versions = view.apply_sync(lambda: __import__("numpy").__version__)
print(json.dumps({"squares": squares, "versions": versions}))
'''


def run_client(local, name: str, engines: int) -> dict:
    script = CLIENT.format(engines=engines)
    result = local("ssh", name, "--", "python3 -c " + shlex.quote(script))
    assert result.returncode == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ipython_client_runs_a_function_on_every_engine(local):
    name = "ipy-hpc1"
    local.start("local-ipython", name, timeout=900)
    try:
        nodes = sorted(n["name"] for n in local.nodes(name))
        assert nodes == ["controller001", "worker001", "worker002"]
        # small flavor: 1 CPU, so one engine per node
        answer = run_client(local, name, engines=3)
        assert len(answer["ids"]) == 3
        assert sorted(answer["hosts"]) == nodes
        # the controller is a service listening on its private address
        result = local("ssh", name, "--", "systemctl is-active ipcontroller.service ipengine@1.service")
        assert result.stdout.split() == ["active", "active"], result.output
        # the engines got their connection file copied (not through the shared /home)
        result = local("ssh", name, "-n", "worker002", "--",
                       "sudo cat /etc/ipyparallel/ipcontroller-engine.json")
        assert result.returncode == 0, result.output
        controller_ip = next(n for n in local.nodes(name) if n["name"] == "controller001")["preferred_ip"]
        assert json.loads(result.stdout)["interface"] == f"tcp://{controller_ip}", result.output
        # a restarted controller takes its engines back
        assert local("ssh", name, "--", "sudo systemctl restart ipcontroller.service").returncode == 0
        assert sorted(run_client(local, name, engines=3)["hosts"]) == nodes
        # the IPython shell and NumPy on every node; a NumPy map over the engines from the shell
        for node in nodes:
            result = local("ssh", name, "-n", node, "--",
                           "ipython --version && python3 -c 'import numpy; print(numpy.__version__)'")
            assert result.returncode == 0 and len(result.stdout.split()) == 2, result.output
        result = local("ssh", name, "--", "ipython --quick --no-banner -c " + shlex.quote(NUMPY_MAP))
        assert result.returncode == 0, result.output
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        assert answer["squares"] == [x * x for x in range(12)] and len(answer["versions"]) == 3, result.output
        # a second setup changes nothing
        assert_setup_changes_nothing(local, name)
    finally:
        assert local("stop", name, "--yes").returncode == 0
