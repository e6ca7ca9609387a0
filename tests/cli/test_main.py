"""The command line itself (seed 4.3): --version, -h everywhere, the commands still to come, -v."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import elasticcluster

#: every subcommand the CLI registers, with the options the seed documents for it
SUBCOMMANDS = {
    "start": ["-n CLUSTER_NAME", "--name", "--nodes", "--no-setup", "cluster"],
    "stop": ["--force", "--yes", "cluster"],
    "list": ["--json"],
    "list-nodes": ["-u", "--update", "--json", "cluster"],
    "list-templates": ["--json", "GLOB"],
    "setup": ["cluster"],
    "resize": ["-a", "--add", "-r", "--remove", "--no-setup", "--yes", "cluster"],
    "ssh": ["cluster"],
    "sftp": ["cluster"],
    "pause": ["cluster"],
    "resume": ["cluster"],
    "remove-node": ["cluster", "node"],
}

#: the commands that are registered but cannot work yet, each with valid arguments
NOT_YET = [
    ["start", "slurm"],
    ["start", "slurm", "-n", "mine", "--nodes", "1:frontend,4:compute", "--no-setup"],
    ["stop", "mycluster", "--yes", "--force"],
    ["resize", "mycluster", "-a", "2:compute", "--yes"],
    ["resize", "mycluster", "-r", "1:compute", "--no-setup", "--yes"],
    ["setup", "mycluster"],
    ["setup", "mycluster", "--", "--tags", "slurm"],
    ["ssh", "mycluster"],
    ["ssh", "mycluster", "--", "hostname", "-f"],
    ["sftp", "mycluster"],
    ["pause", "mycluster", "--yes"],
    ["resume", "mycluster"],
    ["remove-node", "mycluster", "compute002", "--yes"],
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


@pytest.mark.parametrize("argv", NOT_YET, ids=[" ".join(a) for a in NOT_YET])
def test_commands_not_available_yet(cli, tmp_path, argv):
    storage = tmp_path / "storage"
    result = cli("-s", str(storage), *argv)
    assert result.returncode != 0
    assert "not available yet" in result.stderr
    assert f"elasticcluster {argv[0]}" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not storage.exists()


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
