"""The fault matrix: every command of the lifecycle against a misbehaving cloud and signals.

Each cell runs one real command (``start``, ``resize``, ``remove-node`` or
``stop``) of the CLI against moto's EC2 server through a fault proxy that
breaks one call of one EC2 action (an error answer, once or always; the answer
lost after the cloud acted; the request lost; a garbage answer; the endpoint
gone) or sends the command a signal at an exact point of its run (KILL, TERM,
INT, a double INT), in a private network namespace. A second matrix corrupts
the state file of a started cluster in every way we know and runs the commands
that read it.

Every cell asserts the same invariants:
- the exit status is the documented one (0 done, 1 cloud failure, 2 bad input,
  130/143 interrupted with a message saying what exists and what to run, or
  the KILL itself), never a traceback;
- a command that succeeds leaves exactly the recorded instances alive (no
  duplicate from a retried create);
- after it, one ``stop`` (or ``stop --force``) leaves zero instances of the
  cluster alive and nothing in storage;
- no secret in any output or stored file.

Cells run a few at a time (threads, each with its own proxy and storage) so that
the whole matrix takes a few minutes on two CPUs. The back-off between retries
is shortened for the matrix (``ELASTICCLUSTER_RETRY_BACKOFF``): the behaviour is
the same, only the waits are shorter.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.cloud.conftest import MOTO_SITE, SECRET, ec2_config
from tests.cloud.fault_proxy import FaultProxy, Rule

WORKERS = 4
TIMEOUT = 240

#: one EC2 error or breakage, as the proxy plays it
FAULTS = {
    "503-once": dict(code="ServiceUnavailable", status=503, times=1),
    "503-always": dict(code="ServiceUnavailable", status=503),
    "400": dict(code="InvalidParameterValue", status=400),
    "drop": dict(fault="drop", times=1),
    "swallow": dict(fault="swallow", times=1),
    "garbage": dict(fault="garbage", times=1),
    "gone": dict(fault="gone", times=1),
}
#: faults a command must ride out (retries) and succeed
RIDDEN_OUT = {"503-once", "drop", "swallow"}

SIGNALS = {"KILL": [signal.SIGKILL], "TERM": [signal.SIGTERM], "INT": [signal.SIGINT],
           "INTx2": [signal.SIGINT, signal.SIGINT]}
SIGNAL_EXIT = {"KILL": -9, "TERM": 143, "INT": 130, "INTx2": 130}

COMMANDS = {
    "start": lambda name: ("start", "slurm", "-n", name, "--no-setup", "-p", "2"),
    "resize": lambda name: ("resize", name, "-a", "2:compute", "--yes", "--no-setup"),
    "remove-node": lambda name: ("remove-node", name, "compute001", "--yes", "--no-setup"),
    "stop": lambda name: ("stop", name, "--yes"),
}

#: EC2 actions each command makes (probed: see the module docstring of test_both_faces)
ACTIONS = {
    "start": ["DescribeKeyPairs", "ImportKeyPair", "DescribeSecurityGroups", "CreateSecurityGroup",
              "AuthorizeSecurityGroupIngress", "DescribeImages", "RunInstances", "DescribeInstances"],
    "resize": ["DescribeKeyPairs", "DescribeImages", "RunInstances", "DescribeInstances"],
    "remove-node": ["DescribeInstances", "TerminateInstances"],
    "stop": ["DescribeInstances", "TerminateInstances"],
}

#: where signals hit: (command, action, which call, delay after it arrives, SSH logins refused)
SIGNAL_POINTS = [
    ("start", "ImportKeyPair", 1, 0.0, False),
    ("start", "CreateSecurityGroup", 1, 0.0, False),
    ("start", "RunInstances", 1, 0.0, False),
    ("start", "RunInstances", 2, 0.0, False),
    ("start", "DescribeInstances", 2, 0.0, False),
    ("start", "DescribeInstances", 2, 1.0, True),  # in the SSH wait
    ("resize", "RunInstances", 1, 0.0, False),
    ("resize", "DescribeInstances", 1, 0.0, False),
    ("remove-node", "TerminateInstances", 1, 0.0, False),
    ("stop", "DescribeInstances", 1, 0.0, False),
    ("stop", "TerminateInstances", 1, 0.0, False),
]


@dataclass
class Cell:
    command: str
    action: str
    what: str  # a FAULTS key or a SIGNALS key
    nth: int = 1
    delay: float = 0.0
    ssh_refused: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        where = f"{self.action}#{self.nth}" + (f"+{self.delay}s" if self.delay else "")
        return f"{self.command}/{where}/{self.what}" + ("/ssh-refused" if self.ssh_refused else "")

    def rules(self) -> list[Rule]:
        if self.what in FAULTS:
            return [Rule(self.action, after=self.nth - 1, **FAULTS[self.what])]
        return [Rule(self.action, after=self.nth - 1, times=1, signal=signum, signal_delay=self.delay + 0.3 * i)
                for i, signum in enumerate(SIGNALS[self.what])]


def cells() -> list[Cell]:
    matrix = [Cell(command, action, fault) for command, actions in ACTIONS.items()
              for action in actions for fault in FAULTS]
    matrix += [Cell("start", "RunInstances", fault, nth=2) for fault in ("503-once", "drop", "swallow", "400")]
    matrix += [Cell(command, action, what, nth, delay, refused)
               for command, action, nth, delay, refused in SIGNAL_POINTS for what in SIGNALS]
    return matrix


def write_cell_config(home: Path, url: str, image_id: str, key: Path, name: str, extra: str = "") -> None:
    """The cell's configuration: one frontend and one compute node, and a key pair and a security
    group of its own (a cell must make them, and may break them, whatever the others do)."""
    text = ec2_config(url, image_id, key, compute=1, cluster_extra=extra)
    text = text.replace("user_key_name = elasticcluster-test", f"user_key_name = key-{name}")
    text = text.replace("security_group = elasticcluster-test", f"security_group = sg-{name}")
    (home / "config").write_text(text)
    (home / "config").chmod(0o600)


class Runner:
    """Runs cells against one moto server, each cell with a proxy and a storage of its own."""

    def __init__(self, moto, key: Path, refused_key: Path, folder: Path):
        self.moto, self.key, self.refused_key, self.folder = moto, key, refused_key, folder
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MOTO_SITE), self.env.get("PYTHONPATH")]))
        self.env["ELASTICCLUSTER_RETRY_BACKOFF"] = "0.05"

    def run(self, number: int, cell: Cell) -> Cell:
        try:
            self._run(number, cell)
        except Exception as err:  # a broken cell is a failed cell, with what broke it
            cell.problems.append(f"{type(err).__name__}: {err}")
        return cell

    def _cli(self, home: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(home, *args), capture_output=True, text=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def _argv(self, home: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "elasticcluster", "-c", str(home / "config"), "-s",
                str(home / "storage"), *args]

    def _run(self, number: int, cell: Cell) -> None:
        home = self.folder / f"cell{number}"
        home.mkdir()
        name = f"mx{number}"
        proxy = FaultProxy(self.moto.url)
        try:
            key = self.refused_key if cell.ssh_refused else self.key
            extra = "startup_timeout = 20\nssh_probe_timeout = 2" if cell.ssh_refused else ""
            write_cell_config(home, proxy.url, self.moto.image_id, key, name, extra)
            if cell.command != "start":
                ready = self._cli(home, "start", "slurm", "-n", name, "--no-setup")
                assert ready.returncode == 0, ready.stdout + ready.stderr
            proxy.counts.clear()
            proxy.rules[:] = cell.rules()
            proc = subprocess.Popen(self._argv(home, *COMMANDS[cell.command](name)), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=self.env, stdin=subprocess.DEVNULL,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            proxy.target = proc.pid
            out, err = proc.communicate(timeout=TIMEOUT)
            outputs = [out, err]
            self._check_command(cell, proc.returncode, err, home, name)
            proxy.rules.clear()
            proxy.gone = False
            outputs += self._clean(cell, home, name)
            for text in outputs:
                if "Traceback" in text:
                    cell.problems.append(f"traceback: {text[-1500:]}")
                if SECRET in text:
                    cell.problems.append("the secret key appears in an output")
            for path in home.rglob("*"):
                if path.is_file() and not path.is_symlink() and path.name != "config" \
                        and SECRET.encode() in path.read_bytes():
                    cell.problems.append(f"the secret key is in {path}")
        finally:
            proxy.close()

    def _check_command(self, cell: Cell, code: int, err: str, home: Path, name: str) -> None:
        if cell.what in SIGNALS:
            expected = {SIGNAL_EXIT[cell.what]}
        elif cell.what in RIDDEN_OUT:
            expected = {0}
        else:
            expected = {0, 1}
        if code not in expected:
            cell.problems.append(f"exit status {code}, expected {sorted(expected)}: {err[-1200:]}")
        if code in (130, 143):
            if "interrupted" not in err or "elasticcluster " not in err:
                cell.problems.append(f"the interruption says not what exists and what to run: {err[-800:]}")
        if code == 1 and "ERROR" not in err:
            cell.problems.append(f"failed without an error message: {err[-800:]}")
        if code == 0 and cell.command != "stop":
            state = json.loads((home / "storage" / name / "state.json").read_text())["cluster"]
            recorded = {n["instance_id"] for nodes in state["nodes"].values() for n in nodes}
            alive = {i["InstanceId"] for i in self.moto.instances(name)}
            if None in recorded or recorded != alive:
                cell.problems.append(f"after success: recorded {sorted(map(str, recorded))} but alive "
                                     f"{sorted(alive)}")

    def _clean(self, cell: Cell, home: Path, name: str) -> list[str]:
        """One stop (--force if the first cannot finish); then nothing of the cluster is left."""
        outputs = []
        if (home / "storage" / name).exists():
            stop = self._cli(home, "stop", name, "--yes")
            outputs += [stop.stdout, stop.stderr]
            if stop.returncode != 0:
                forced = self._cli(home, "stop", name, "--force", "--yes")
                outputs += [forced.stdout, forced.stderr]
                if forced.returncode != 0:
                    cell.problems.append(f"stop --force exit {forced.returncode}: {forced.stderr[-800:]}")
        alive = self.moto.instances(name)
        if alive:
            cell.problems.append(f"{len(alive)} instance(s) alive after stop: "
                                 f"{[i['InstanceId'] for i in alive]}")
        if (home / "storage" / name).exists():
            cell.problems.append("the cluster's storage folder is left after stop")
        return outputs


def test_fault_matrix(moto, ssh_key, tmp_path, capsys):
    refused = ssh_key.parent / "refused_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(refused)], check=True)
    matrix = cells()
    assert len(matrix) >= 150
    runner = Runner(moto, ssh_key, refused, tmp_path)
    began = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        done = list(pool.map(runner.run, range(len(matrix)), matrix))
    failed = [cell for cell in done if cell.problems]
    with capsys.disabled():
        print(f"\nfault matrix: {len(done)} cells in {time.monotonic() - began:.0f}s, {len(failed)} failed")
        for cell in failed:
            print(f"  {cell.id}: " + " | ".join(cell.problems))
    assert not failed, [cell.id for cell in failed]


# -- the state file, corrupted -------------------------------------------------------------


def _replace(data: bytes):
    def corrupt(path: Path) -> None:
        path.write_bytes(data)
    return corrupt


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _with(**changes):
    def corrupt(path: Path) -> None:
        data = json.loads(path.read_text())
        for key, value in changes.items():
            if key == "name":
                data["cluster"]["name"] = value
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    return corrupt


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "nowhere.json")


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


CORRUPTIONS = {
    "truncated": _truncate,
    "garbage": _replace(b"\x89PNG not a state file at all"),
    "empty": _replace(b""),
    "nul-bytes": _replace(b"\x00" * 64),
    "not-utf8": _replace(b"\xff\xfe\x00{\x00"),
    "wrong-shape": _replace(b"[1, 2, 3]\n"),
    "no-cluster": _replace(b'{"format": 1}\n'),
    "no-format": _with(format=None),
    "format-99": _with(format=99),
    "format-text": _with(format="one"),
    "another-cluster": _with(name="someone-else"),
    "deep-nesting": _replace(b"[" * 200000 + b"]" * 200000),
    "directory": _directory,
    "dangling-symlink": _dangling,
    "fifo": _fifo,
}

#: what each command does with an unreadable state: (exit status, text its stderr holds)
READERS = {
    "list": (("list",), 2, "cannot be read|is corrupt|not an elasticcluster|newer|format|holds cluster"),
    "list-nodes": (("list-nodes", "{name}"), 2, "state file"),
    "start-again": (("start", "slurm", "-n", "{name}", "--no-setup"), 2, "state file"),
    "stop": (("stop", "{name}", "--yes"), 2, "stop --force NAME --cloud CLOUD"),
    "stop-force": (("stop", "{name}", "--force", "--yes"), 2, "add --cloud CLOUD"),
    "stop-by-tags": (("stop", "{name}", "--force", "--cloud", "moto", "--yes"), 0, "stopped by its tags"),
}


def run_corruption(runner: Runner, number: int, kind: str) -> list[str]:
    """Start a cluster, corrupt its state file, run every reader; the last stops it by its tags."""
    import re

    problems = []
    home = runner.folder / f"state{number}"
    home.mkdir()
    name = f"st{number}"
    proxy = FaultProxy(runner.moto.url)
    try:
        write_cell_config(home, proxy.url, runner.moto.image_id, runner.key, name)
        started = runner._cli(home, "start", "slurm", "-n", name, "--no-setup")
        assert started.returncode == 0, started.stderr
        alive = {i["InstanceId"] for i in runner.moto.instances(name)}
        assert len(alive) == 2
        CORRUPTIONS[kind](home / "storage" / name / "state.json")
        for reader, (args, code, says) in READERS.items():
            result = runner._cli(home, *(a.format(name=name) for a in args), timeout=60)
            where = f"{kind}/{reader}"
            if result.returncode != code:
                problems.append(f"{where}: exit {result.returncode}, expected {code}: {result.stderr[-600:]}")
            if not re.search(says, result.stderr):
                problems.append(f"{where}: says not {says!r}: {result.stderr[-600:]}")
            if "Traceback" in result.stdout + result.stderr or SECRET in result.stdout + result.stderr:
                problems.append(f"{where}: a traceback or the secret in its output")
            if reader != "stop-by-tags" and {i["InstanceId"] for i in runner.moto.instances(name)} != alive:
                problems.append(f"{where}: changed the instances of a cluster it could not read")
        if runner.moto.instances(name):
            problems.append(f"{kind}: instances left after stop --force --cloud")
        if (home / "storage" / name).exists():
            problems.append(f"{kind}: the cluster's folder is left after stop --force --cloud")
    except Exception as err:
        problems.append(f"{kind}: {type(err).__name__}: {err}")
    finally:
        proxy.close()
    return problems


def test_corrupt_state_matrix(moto, ssh_key, tmp_path, capsys):
    runner = Runner(moto, ssh_key, ssh_key, tmp_path)
    kinds = sorted(CORRUPTIONS)
    began = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        problems = [p for found in pool.map(run_corruption, [runner] * len(kinds), range(len(kinds)), kinds)
                    for p in found]
    with capsys.disabled():
        print(f"\nstate corruption matrix: {len(kinds) * len(READERS)} cells in "
              f"{time.monotonic() - began:.0f}s, {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
    assert not problems
