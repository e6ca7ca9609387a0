"""What the setup manages on a node, as our Ansible callback tells it, and the digest the
nodes give of it (``elasticcluster.converged``). Real ``ansible-playbook`` on this machine
(local connection, writing only in a temporary folder) and the real check script run
with ``sh``; the whole round over SSH is in tests/cloud/test_converged.py and every
playbook test on the local cloud (``assert_setup_changes_nothing``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from elasticcluster import converged
from elasticcluster.converged import Manages
from elasticcluster.playbook import PLUGINS, Listener, PlaybookRun, _read_events, ansible_playbook

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars:
    d: "{{ folder }}"
  tasks:
    - ansible.builtin.file: {path: "{{ d }}/etc", state: directory}
    - ansible.builtin.file: {path: "{{ d }}/log", state: touch}
    - ansible.builtin.file: {path: "{{ d }}/gone", state: absent}
    - ansible.builtin.template: {src: one.j2, dest: "{{ d }}/etc/one.conf"}
    - ansible.builtin.copy: {content: "{{ item }}", dest: "{{ d }}/etc/{{ item }}.conf"}
      loop: [two, three]
    - ansible.builtin.copy: {content: "secret", dest: "{{ d }}/etc/secret.key"}
      no_log: true
    - ansible.builtin.lineinfile: {path: "{{ d }}/etc/one.conf", line: "more"}
    - ansible.builtin.command: "true"
    - ansible.builtin.copy: {content: "x", dest: "{{ d }}/elsewhere"}
      delegate_to: localhost
"""


def run_with_callback(tmp_path: Path) -> PlaybookRun:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "one.j2").write_text("one {{ folder }}\n")
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(PLUGINS / "callback"),
               ANSIBLE_CALLBACKS_ENABLED="elasticcluster_events", ELASTICCLUSTER_EVENTS_FD=str(write_fd),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_HOME=str(tmp_path / "ansible"))
    proc = subprocess.Popen([ansible_playbook(), "-i", "node1,", "-c", "local", str(tmp_path / "play.yml"),
                             "-e", json.dumps({"folder": str(tmp_path / "node"),
                                               "ansible_python_interpreter": sys.executable})],
                            env=env, pass_fds=(write_fd,), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    os.close(write_fd)
    run = PlaybookRun(returncode=-1)
    _read_events(read_fd, run, Listener())
    output = proc.communicate(timeout=300)[0]
    assert proc.wait() == 0, output
    return run


def test_the_callback_names_what_each_task_wrote(tmp_path):
    run = run_with_callback(tmp_path)
    node = tmp_path / "node"
    assert set(run.manages) == {"node1"}
    found = run.manages["node1"]
    # templated paths, each item of a loop, a no_log task's path (never its content); not a
    # removed path, not a task delegated to another host, not a command
    assert found.files == {f"{node}/etc/{name}.conf" for name in ("one", "two", "three")} | {
        f"{node}/etc/secret.key"}
    assert found.paths == {f"{node}/etc", f"{node}/log"}
    assert found.services == found.users == set()


def digest_here(manages: Manages) -> str:
    done = subprocess.run(["sh", "-s", "--", *manages.arguments()], input=converged._SCRIPT,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_digest_changes_with_what_the_setup_manages_only(tmp_path):
    conf, folder, log, link = tmp_path / "a.conf", tmp_path / "d", tmp_path / "x.log", tmp_path / "l"
    conf.write_text("a = 1\n")
    folder.mkdir(mode=0o755)
    log.touch()
    link.symlink_to(conf)
    manages = Manages(files={str(conf), str(link)}, paths={str(folder), str(log)})
    first = digest_here(manages)
    assert len(first) == 64 and digest_here(manages) == first
    # a made path's content is not the setup's: a log file grows, the digest holds
    log.write_text("a line of log\n")
    (tmp_path / "unmanaged").write_text("x")
    assert digest_here(manages) == first
    # a written file's content, a folder's mode, a link's target, a file gone: all count
    for change, undo in (
            (lambda: conf.write_text("a = 2\n"), lambda: conf.write_text("a = 1\n")),
            (lambda: conf.chmod(0o600), lambda: conf.chmod(0o644)),
            (lambda: folder.chmod(0o700), lambda: folder.chmod(0o755)),
            (lambda: (link.unlink(), link.symlink_to(folder)), lambda: (link.unlink(), link.symlink_to(conf))),
            (lambda: log.rename(tmp_path / "moved"), lambda: (tmp_path / "moved").rename(log))):
        conf.chmod(0o644)
        change()
        assert digest_here(manages) != first
        undo()
        assert digest_here(manages) == first
    # a service or a user the setup made: their state counts
    assert digest_here(Manages(users={"root"})) != digest_here(Manages(users={"no-such-user-here"}))


def test_what_a_result_manages():
    assert converged.what_a_result_manages("ansible.builtin.systemd", {}, {"name": "slurmd", "state": "started"}) \
        == ("service", "slurmd")
    assert converged.what_a_result_manages("service", {}, {"name": "munge", "state": "stopped"}) is None
    assert converged.what_a_result_manages("ansible.builtin.user", {"name": "alice"}, {"name": "alice"}) \
        == ("user", "alice")
    assert converged.what_a_result_manages("user", {}, {"name": "bob", "state": "absent"}) is None
    assert converged.what_a_result_manages("copy", {}, {"dest": "relative/path"}) is None


def test_state_key_follows_the_fingerprint_and_the_inventory():
    inventory = {"all": {"hosts": {"compute001": {"ansible_host": "10.0.0.2"}}}}
    key = converged.state_key("f1", inventory)
    assert converged.state_key("f1", json.loads(json.dumps(inventory))) == key
    assert converged.state_key("f2", inventory) != key
    moved = {"all": {"hosts": {"compute001": {"ansible_host": "10.0.0.3"}}}}
    assert converged.state_key("f1", moved) != key
    assert converged.state_key(None, inventory) is None
