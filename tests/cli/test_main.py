"""The command line itself (seed 4.3): --version, -h everywhere, bad input, -v, lazy imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import elasticcluster

#: every subcommand the CLI registers, with the options the seed documents for it
SUBCOMMANDS = {
    "start": ["-n CLUSTER_NAME", "--name", "--nodes", "--no-setup", "cluster"],
    "stop": ["--force", "--yes", "--cloud", "--keep-images", "cluster"],
    "autoscale": ["--once", "--interval", "cluster"],
    "bake": ["--kind", "cluster"],
    "list": ["--json"],
    "list-nodes": ["-u", "--update", "--json", "cluster"],
    "list-templates": ["--json", "GLOB"],
    "list-clouds": ["--json", "GLOB"],
    "setup": ["cluster"],
    "resize": ["-a", "--add", "-r", "--remove", "--no-setup", "--yes", "cluster"],
    "ssh": ["cluster"],
    "sftp": ["cluster"],
    "pause": ["cluster"],
    "resume": ["cluster"],
    "remove-node": ["cluster", "node"],
}

#: the commands that change a cluster, each with valid arguments naming a cluster (or template)
#: that does not exist: (argv, what the message must name)
CHANGING = [
    (["start", "nosuch"], "no cluster template 'nosuch'"),
    (["start", "nosuch", "-n", "mine", "--nodes", "1:frontend,4:compute", "--no-setup"],
     "no cluster template 'nosuch'"),
    (["stop", "mycluster", "--yes", "--force"], "no cluster named 'mycluster'"),
    (["resize", "mycluster", "-a", "2:compute", "--yes"], "no cluster named 'mycluster'"),
    (["resize", "mycluster", "-r", "1:compute", "--no-setup", "--yes"], "no cluster named 'mycluster'"),
    (["remove-node", "mycluster", "compute002", "--yes"], "no cluster named 'mycluster'"),
    (["pause", "mycluster", "--yes"], "no cluster named 'mycluster'"),
    (["resume", "mycluster"], "no cluster named 'mycluster'"),
    (["setup", "mycluster"], "no cluster named 'mycluster'"),
    (["bake", "mycluster"], "no cluster named 'mycluster'"),
    (["bake", "mycluster", "--kind", "compute", "--kind", "frontend"], "no cluster named 'mycluster'"),
    (["stop", "mycluster", "--yes", "--keep-images"], "no cluster named 'mycluster'"),
    (["setup", "mycluster", "-v", "--", "--tags", "slurm"], "no cluster named 'mycluster'"),
    (["ssh", "mycluster"], "no cluster named 'mycluster'"),
    (["ssh", "mycluster", "-n", "compute001", "--", "hostname", "-f"], "no cluster named 'mycluster'"),
    (["sftp", "mycluster"], "no cluster named 'mycluster'"),
    (["list-nodes", "-u", "mycluster"], "no cluster named 'mycluster'"),
]


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"elasticcluster {elasticcluster.__version__}"


def test_console_script_is_the_same_command(home):
    script = Path(sys.executable).parent / "elasticcluster"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"elasticcluster {elasticcluster.__version__}"


def test_top_level_help_lists_every_subcommand(cli):
    result = cli("-h")
    assert result.returncode == 0
    for option in ("-v", "--verbose", "-s PATH", "--storage", "-c PATH", "--config", "--version"):
        assert option in result.stdout
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_registered_subcommands_are_the_expected_ones():
    from elasticcluster.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    assert set(action.choices) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_on_every_subcommand(cli, name):
    for flag in ("-h", "--help"):
        result = cli(name, flag)
        assert result.returncode == 0, result.output
        assert result.stdout.startswith(f"usage: elasticcluster {name} ")
        for option in ["-v", *SUBCOMMANDS[name]]:
            assert option in result.stdout, f"{name} -h does not mention {option}"
        assert "Traceback" not in result.output


@pytest.mark.parametrize("argv, message", CHANGING, ids=[" ".join(a) for a, _ in CHANGING])
def test_cluster_commands_on_an_unknown_cluster(cli, tmp_path, argv, message):
    """Exit 2 with one clear message; the stored clusters are named and left alone."""
    from elasticcluster.cluster import Cluster
    from elasticcluster.repository import DiskRepository

    storage = tmp_path / "storage"
    Cluster("alpha", repository=DiskRepository(storage)).save()
    before = sorted(p.name for p in storage.iterdir())
    state = (storage / "alpha" / "state.json").read_bytes()
    result = cli("-s", str(storage), *argv, input="")
    assert result.returncode == 2, result.output
    assert message in result.stderr
    if "no cluster named" in message:
        assert "stored clusters: alpha" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in storage.iterdir()) == before
    assert (storage / "alpha" / "state.json").read_bytes() == state


def test_no_subcommand_is_a_usage_error(cli):
    result = cli()
    assert result.returncode == 2
    assert "usage: elasticcluster" in result.stderr
    assert "SUBCOMMAND" in result.stderr


def test_unknown_subcommand(cli):
    result = cli("launch", "slurm")
    assert result.returncode == 2
    assert "invalid choice: 'launch'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv, bad", [
    (["start", "slurm", "--nodes", "lots"], "'lots' is not N:KIND"),
    (["start", "slurm", "--nodes", "1:frontend,x:compute"], "'x:compute' is not N:KIND"),
    (["resize", "mycluster", "-a", "2compute"], "'2compute' is not N:KIND"),
    (["resize", "mycluster", "-r", "1:"], "'1:' is not N:KIND"),
    (["start"], "required: cluster"),
    (["remove-node", "mycluster"], "required: node"),
])
def test_bad_arguments_exit_2(cli, argv, bad):
    result = cli(*argv)
    assert result.returncode == 2
    assert bad in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [
    ["-v", "list"], ["-vv", "list"], ["-vvv", "list"], ["-vvvv", "list"],
    ["list", "-v"], ["list", "-vvv"], ["-v", "list", "-vv"],
    ["--verbose", "list", "--verbose"],
], ids=lambda a: " ".join(a))
def test_verbosity_before_and_after_the_subcommand(cli, tmp_path, argv):
    result = cli("-s", str(tmp_path / "storage"), *argv)
    assert result.returncode == 0, result.output
    assert result.stdout == "No clusters found.\n"


@pytest.mark.parametrize("argv, traceback", [
    (["list-nodes", "nosuch"], False),
    (["-vv", "list-nodes", "nosuch"], False),
    (["list-nodes", "nosuch", "-vv"], False),
    (["-vvv", "list-nodes", "nosuch"], True),
    (["list-nodes", "nosuch", "-vvv"], True),
    (["-v", "list-nodes", "nosuch", "-vv"], True),  # the two counts add up
], ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_tracebacks_only_from_three_v(cli, tmp_path, argv, traceback):
    result = cli("-s", str(tmp_path / "storage"), *argv)
    assert result.returncode == 2
    assert "no cluster named 'nosuch'" in result.stderr
    assert ("Traceback (most recent call last)" in result.stderr) is traceback


def test_storage_path_that_is_a_file(cli, tmp_path):
    storage = tmp_path / "storage"
    storage.write_text("not a folder")
    result = cli("-s", str(storage), "list")
    assert result.returncode == 2, result.output
    assert str(storage) in result.stderr
    assert "Traceback" not in result.output


HEAVY = ("libcloud", "fabric", "paramiko", "ansible", "cerberus", "configobj", "rich")


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("argv", [["--version"], ["-h"], ["list"], ["list", "--json"], ["list-nodes", "alpha"],
                                  ["start", "-h"], ["list-templates"]], ids=" ".join)
def test_report_commands_load_no_heavy_library(cli, home, write_config, tmp_path, argv):
    """Piped, with a warm template cache: no cloud, SSH, Ansible, config-checking or rich import."""
    from elasticcluster.cluster import Cluster
    from elasticcluster.repository import DiskRepository
    from tests.conftest import VALID_CONFIG

    storage = tmp_path / "storage"
    cluster = Cluster("alpha", repository=DiskRepository(storage), ssh_to="frontend")
    cluster.add_node("frontend", "ami", "user", "m1.small", None)
    cluster.save()
    config = write_config(VALID_CONFIG)
    options = ["-c", str(config), "-s", str(storage)]
    assert cli(*options, "list-templates").returncode == 0  # fills the template cache
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "elasticcluster", *options, *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = imported_modules(proc.stderr)
    assert "elasticcluster.cli" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
