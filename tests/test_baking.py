"""What a baked image leaves out: the secrets list, and the shell scripts that move the secrets
away while the image is made and put them back (run here with sh, on files of a temporary
folder; on real nodes in tests/local/test_bake.py and over SSH in tests/cloud/test_bake.py)."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from elasticcluster import baking
from elasticcluster.exceptions import ConfigurationError
from elasticcluster.resources import bundled_dir


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_the_bundled_list_names_host_keys_and_cluster_secrets_and_nothing_under_home():
    paths = baking.read_secrets(bundled_dir("playbooks") / "bake-secrets.txt")
    patterns = {p.pattern: p.empty for p in paths}
    for needed in ("/etc/ssh/ssh_host_*", "/etc/munge/munge.key", "/etc/munge/.elasticcluster-key",
                   "/var/lib/elasticcluster/firstboot-done", "/etc/slurm/slurmdbd.conf",
                   "/etc/condor/passwords.d/*", "/root/.ssh/id_elasticcluster"):
        assert patterns.get(needed) is False, needed
    assert patterns["/etc/machine-id"] is True  # emptied, not moved: systemd makes one at boot
    assert not [p for p in patterns if p == "/home" or p.startswith("/home/")]


@pytest.mark.parametrize("line, why", [
    ("etc/ssh/key", "absolute path"),
    ("/home/debian/.ssh/id_rsa", "under /home"),
    ("/home", "under /home"),
    ("/etc/a file", "absolute path"),
    ("/etc/$(reboot)", "absolute path"),
    ("/etc/x;rm", "absolute path"),
    ("/etc/machine-id blank", "absolute path"),
])
def test_a_bad_line_is_refused_with_file_and_line(tmp_path, line, why):
    path = tmp_path / "secrets.txt"
    path.write_text(f"# comment\n/etc/ok\n{line}\n")
    with pytest.raises(ConfigurationError) as caught:
        baking.read_secrets(path)
    assert f"{path}:3:" in str(caught.value) and why in str(caught.value)


def test_an_unreadable_list_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read"):
        baking.read_secrets(tmp_path / "missing.txt")


@pytest.mark.parametrize("cluster, kind", [("bk", "compute"), ("My.Cluster+1", "gpu_node"),
                                           ("x" * 100, "frontend")])
def test_image_names_suit_every_cloud(cluster, kind):
    name = baking.image_name(cluster, kind, when=0)
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name) and len(name) <= 63, name
    assert name.endswith("-19700101-000000") and "--" not in name


@pytest.fixture
def node(tmp_path):
    """A fake node's files in a temporary folder, and its stage folder."""
    root = tmp_path / "node"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/munge").mkdir()
    for name, text in {"etc/ssh/ssh_host_ed25519_key": "PRIVATE", "etc/ssh/ssh_host_ed25519_key.pub": "PUBLIC",
                       "etc/ssh/sshd_config": "Port 22", "etc/munge/munge.key": "MUNGE",
                       "etc/machine-id": "0123abcd"}.items():
        (root / name).write_text(text)
    (root / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    paths = [baking.SecretPath(f"{root}/etc/ssh/ssh_host_*"), baking.SecretPath(f"{root}/etc/munge/munge.key"),
             baking.SecretPath(f"{root}/etc/machine-id", empty=True),
             baking.SecretPath(f"{root}/var/lib/absent")]
    return root, paths, str(tmp_path / "stage")


def fallback_alive(stage: str) -> int | None:
    """The process group of the fallback timer the stage script started (None if none runs)."""
    pid_file = Path(stage) / "fallback.pid"
    if not pid_file.exists():
        return None  # systemd-run took it: a timer unit, stopped by the restore
    group = int(pid_file.read_text())
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return None
    return group


def test_staging_moves_the_secrets_away_and_restoring_puts_them_back(node):
    root, paths, stage = node
    staged = sh(baking.stage_script(paths, stage=stage))
    assert staged.returncode == 0, staged.stderr
    group = fallback_alive(stage)
    assert sorted(staged.stdout.split()) == sorted(
        f"{root}/{p}" for p in ("etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub",
                                "etc/munge/munge.key", "etc/machine-id"))
    assert not list((root / "etc/ssh").glob("ssh_host_*")) and not (root / "etc/munge/munge.key").exists()
    assert (root / "etc/ssh/sshd_config").read_text() == "Port 22"  # what is not listed stays
    assert (root / "etc/machine-id").read_text() == ""  # emptied in place
    assert Path(f"{stage}{root}/etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"
    restored = sh(baking.restore_script(stage))
    assert restored.returncode == 0, restored.stderr
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"
    assert (root / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/munge/munge.key").read_text() == "MUNGE"
    assert (root / "etc/machine-id").read_text() == "0123abcd"
    assert not Path(stage).exists()
    if group is not None:  # the fallback timer is gone, its sleep too
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the fallback timer's process group {group} still runs")
    assert sh(baking.restore_script(stage)).returncode == 0  # twice is harmless


def test_a_file_written_meanwhile_is_kept_and_an_emptied_one_is_restored(node):
    root, paths, stage = node
    assert sh(baking.stage_script(paths, stage=stage)).returncode == 0
    (root / "etc/munge/munge.key").write_text("NEWER")  # a daemon wrote its state again meanwhile
    (root / "etc/machine-id").write_text("")
    assert sh(baking.restore_script(stage)).returncode == 0
    assert (root / "etc/munge/munge.key").read_text() == "NEWER"
    assert (root / "etc/machine-id").read_text() == "0123abcd"


def test_a_bake_after_an_interrupted_one_first_puts_back_what_it_left(node):
    root, paths, stage = node
    assert sh(baking.stage_script(paths, stage=stage)).returncode == 0
    # the first bake was killed: its files are still staged; the next one stages them again
    again = sh(baking.stage_script(paths, stage=stage))
    assert again.returncode == 0, again.stderr
    assert Path(f"{stage}{root}/etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"
    assert sh(baking.restore_script(stage)).returncode == 0
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"
    assert (root / "etc/machine-id").read_text() == "0123abcd"


def test_the_timer_puts_the_secrets_back_when_nobody_does(node):
    root, paths, stage = node
    assert sh(baking.stage_script(paths, fallback_delay=1, stage=stage)).returncode == 0
    assert not (root / "etc/munge/munge.key").exists()
    deadline = time.monotonic() + 20
    while Path(stage).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (root / "etc/munge/munge.key").read_text() == "MUNGE"
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"
    assert not Path(stage).exists()


def test_a_restore_that_leaves_files_staged_fails_and_loses_nothing(node):
    root, paths, stage = node
    assert sh(baking.stage_script(paths, stage=stage)).returncode == 0
    (root / "etc/munge").rmdir()
    (root / "etc/munge").write_text("a file where the key's folder was")  # nothing can go back there
    result = sh(baking.restore_script(stage))
    assert result.returncode != 0
    assert Path(f"{stage}/moved").exists()
    assert Path(f"{stage}{root}/etc/munge/munge.key").read_text() == "MUNGE"
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE"  # the others went back
    (root / "etc/munge").unlink()
    assert sh(baking.restore_script(stage)).returncode == 0
    assert (root / "etc/munge/munge.key").read_text() == "MUNGE"
