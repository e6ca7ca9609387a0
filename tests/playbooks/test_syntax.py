"""Fast checks of the bundled playbooks (issue 6): every playbook passes the real
``ansible-playbook --syntax-check`` and ``--list-tasks`` (the dry check of its
task list) against an inventory holding every group of seed 4.4; the roles that
cannot run here (HTCondor, Torque/Maui, Hadoop, OrangeFS) hold their key tasks
for each group and render their templates; every task names a fully qualified
``ansible.builtin`` module, and no package is installed in a loop.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PLAYBOOKS = REPO / "playbooks"
ROLES = PLAYBOOKS / "roles"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

# Every group of seed 4.4 and issue 6 (with the aliases the playbooks accept),
# spread over a frontend and two compute nodes the way the bundled setups do.
FRONTEND_GROUPS = [
    "nfs_server", "slurm_master", "gridengine_master", "condor_master", "ganglia_master",
    "ipython_controller", "pbs_master", "maui_master", "hadoop_namenode", "hadoop_jobtracker",
    "gluster_client", "pvfs2_client", "pvfs2_meta", "lmod",
]
COMPUTE_GROUPS = [
    "nfs_client", "slurm_clients", "gridengine_clients", "condor_workers", "ganglia_monitor",
    "ipython_engine", "pbs_clients", "hadoop_datanode", "hadoop_tasktracker", "gluster_data",
    "gluster_client", "pvfs2_data", "pvfs2_client", "lmod",
]
NODES = {"frontend001": ("frontend", "10.0.0.10"), "compute001": ("compute", "10.0.0.11"),
         "compute002": ("compute", "10.0.0.12")}

MODULE_PACKAGE_INSTALLERS = {"ansible.builtin.apt", "ansible.builtin.package", "ansible.builtin.dnf",
                             "ansible.builtin.dnf5", "ansible.builtin.yum", "ansible.builtin.pip"}

# The key tasks ("role : task name") each group's plays must hold, for the
# services whose packages this machine's nodes cannot fetch.
EXPECTED_TASKS = {
    "condor_master": ["condor_common : Add the HTCondor apt repository",
                      "condor_common : Install the HTCondor repository definition",
                      "condor_common : Install HTCondor",
                      "condor_common : Configure the pool (central manager, domains, security)",
                      "condor_master : Make this node the central manager, a submit and an execute host",
                      "condor_master : Create the pool signing key from a random password",
                      "condor_master : Enable and start HTCondor"],
    "condor_workers": ["condor_common : Add the HTCondor apt repository",
                       "condor_common : Install HTCondor",
                       "condor_workers : Make this node an execute host",
                       "condor_workers : Install the pool token issued by the central manager",
                       "condor_workers : Enable and start HTCondor"],
    "pbs_master": ["pbs_common : Install the tools and libraries Torque builds with (Debian, Ubuntu)",
                   "pbs_common : Download the Torque source release",
                   "pbs_common : Build and install Torque",
                   "pbs_common : Enable and start the Torque authorization daemon",
                   "pbs_master : Create the pbs_server database (once)",
                   "pbs_master : List the compute nodes pbs_server schedules on",
                   "pbs_master : Enable and start pbs_server",
                   "pbs_master : Create the default queue"],
    "pbs_clients": ["pbs_common : Build and install Torque",
                    "pbs_clients : Configure pbs_mom",
                    "pbs_clients : Enable and start pbs_mom"],
    "maui_master": ["maui_master : Build and install Maui",
                    "maui_master : Configure Maui",
                    "maui_master : Enable and start Maui"],
    "hadoop_namenode": ["hadoop_common : Download the Hadoop release, checked against Apache's SHA-512",
                        "hadoop_common : Install a Java runtime and the tools Hadoop's scripts use "
                        "(Debian, Ubuntu)",
                        "hadoop_common : Configure Hadoop",
                        "hadoop_namenode : Format HDFS (once)",
                        "hadoop_namenode : Enable and start the NameNode",
                        "hadoop_namenode : Create /tmp (world-writable, sticky) and the admin user's "
                        "HDFS home"],
    "hadoop_resourcemanager": ["hadoop_common : Configure Hadoop",
                               "hadoop_resourcemanager : Enable and start the ResourceManager",
                               "hadoop_resourcemanager : Enable and start the MapReduce job history server"],
    "hadoop_datanode": ["hadoop_common : Configure Hadoop",
                        "hadoop_datanode : Enable and start the DataNode"],
    "hadoop_nodemanager": ["hadoop_common : Configure Hadoop",
                           "hadoop_nodemanager : Enable and start the NodeManager"],
    "pvfs2_meta": ["pvfs2_common : Download the OrangeFS source release",
                   "pvfs2_common : Build and install OrangeFS",
                   "pvfs2_server : Write the file system's configuration (the same on every server)",
                   "pvfs2_server : Create this server's storage space (once)",
                   "pvfs2_server : Enable and start the OrangeFS server"],
    "pvfs2_data": ["pvfs2_common : Build and install OrangeFS",
                   "pvfs2_server : Enable and start the OrangeFS server"],
    "pvfs2_client": ["pvfs2_common : Build and install OrangeFS",
                     "pvfs2_client : Check that the kernel has the orangefs module",
                     "pvfs2_client : Enable and start the OrangeFS client",
                     "pvfs2_client : Mount the file system and mount it at boot"],
}
# Older group names the playbooks keep as aliases: they get the same tasks.
ALIASES = {"hadoop_jobtracker": "hadoop_resourcemanager", "hadoop_tasktracker": "hadoop_nodemanager",
           "hadoop_master": "hadoop_namenode", "hadoop_worker": "hadoop_datanode"}
SERVICE_OF_GROUP = {"condor": "condor.yml", "pbs": "pbs.yml", "maui": "pbs.yml", "hadoop": "hadoop.yml",
                    "pvfs2": "pvfs2.yml"}
UNTESTABLE_ROLE = re.compile(r"^(condor|pbs|maui|hadoop|pvfs2)_")


def _playbook_files() -> list[Path]:
    return sorted(PLAYBOOKS.glob("*.yml"))


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    """An inventory shaped like elasticcluster's own (see inventory.py), every group filled."""
    hosts = {name: {"ansible_host": ip, "elasticcluster_kind": kind, "elasticcluster_private_ip": ip,
                    "elasticcluster_cpus": 2, "elasticcluster_memory_mb": 4096}
             for name, (kind, ip) in NODES.items()}
    children: dict[str, dict] = {}
    for name, (kind, _) in NODES.items():
        for group in FRONTEND_GROUPS if kind == "frontend" else COMPUTE_GROUPS:
            children.setdefault(group, {"hosts": {}})["hosts"][name] = None
    data = {"all": {"vars": {"elasticcluster_cluster": "mycluster", "elasticcluster_frontend": "frontend001",
                             "ansible_user": "debian", "ansible_become": True,
                             "ansible_python_interpreter": sys.executable},
                    "hosts": hosts, "children": children}}
    path = tmp_path_factory.mktemp("inventory") / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("ansible-home")
    env = dict(os.environ, ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    env.pop("ANSIBLE_CONFIG", None)
    return env


def _ansible_playbook(args: list, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ANSIBLE_PLAYBOOK), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=PLAYBOOKS)


def _run_all(mode: str, inventory: Path, env: dict[str, str]) -> dict[Path, tuple[int, str]]:
    """``ansible-playbook MODE`` of every playbook: one run for all of them (ansible-playbook
    takes several), and one run per playbook only when that fails, to say which one did."""
    playbooks = _playbook_files()
    result = _ansible_playbook([mode, "-i", inventory, *playbooks], env)
    if result.returncode != 0:
        return {playbook: (run.returncode, run.stdout + run.stderr)
                for playbook in playbooks
                for run in [_ansible_playbook([mode, "-i", inventory, playbook], env)]}
    parts = re.split(r"^playbook: (.*)$", result.stdout, flags=re.M)
    outputs = {Path(name.strip()): text for name, text in zip(parts[1::2], parts[2::2], strict=True)}
    assert set(outputs) == set(playbooks), result.stdout
    return {playbook: (0, outputs[playbook]) for playbook in playbooks}


@pytest.fixture(scope="module")
def syntax_checks(inventory, ansible_env) -> dict[Path, tuple[int, str]]:
    return _run_all("--syntax-check", inventory, ansible_env)


@pytest.fixture(scope="module")
def task_lists(inventory, ansible_env) -> dict[Path, tuple[int, str]]:
    return _run_all("--list-tasks", inventory, ansible_env)


def _tasks_by_play(listing: str) -> list[tuple[list[str], list[str]]]:
    """(host patterns, ["role : task", ...]) for each play of ``--list-tasks`` output."""
    plays: list[tuple[list[str], list[str]]] = []
    for line in listing.splitlines():
        play = re.match(r"\s*play #\d+ \((.*?)\):", line)
        if play:
            plays.append((re.split(r"[:,]", play.group(1)), []))
        elif plays and "\tTAGS:" in line and line.strip() != "tasks:":
            plays[-1][1].append(line.split("\tTAGS:")[0].strip())
    return plays


@pytest.mark.parametrize("playbook", _playbook_files(), ids=lambda path: path.name)
def test_playbook_passes_syntax_check(playbook, syntax_checks):
    returncode, output = syntax_checks[playbook]
    assert returncode == 0, output


@pytest.mark.parametrize("playbook", _playbook_files(), ids=lambda path: path.name)
def test_playbook_lists_its_tasks(playbook, task_lists):
    returncode, output = task_lists[playbook]
    assert returncode == 0, output


@pytest.mark.parametrize("group", sorted(EXPECTED_TASKS) + sorted(ALIASES))
def test_untested_services_hold_their_key_tasks(group, task_lists):
    playbook = PLAYBOOKS / SERVICE_OF_GROUP[group.split("_")[0]]
    returncode, output = task_lists[playbook]
    assert returncode == 0, output
    tasks = [task for patterns, play_tasks in _tasks_by_play(output) if group in patterns
             for task in play_tasks]
    assert tasks, f"no play of {playbook.name} applies to the group {group}"
    missing = [task for task in EXPECTED_TASKS[ALIASES.get(group, group)] if task not in tasks]
    assert not missing, f"{group} lacks {missing}; its tasks: {tasks}"


@pytest.mark.parametrize("group", sorted(EXPECTED_TASKS))
def test_site_yml_applies_the_untested_services(group, task_lists):
    returncode, output = task_lists[PLAYBOOKS / "site.yml"]
    assert returncode == 0, output
    tasks = [task for patterns, play_tasks in _tasks_by_play(output) if group in patterns
             for task in play_tasks]
    assert set(EXPECTED_TASKS[group]) <= set(tasks)


def test_untested_roles_render_their_templates(inventory, ansible_env, tmp_path):
    """Every template of the roles that cannot run here renders on every node, with the
    roles' defaults and a Debian 12 node's facts (Ansible's own template lookup)."""
    roles = sorted(path for path in ROLES.iterdir() if UNTESTABLE_ROLE.match(path.name))
    defaults = [str(path / "defaults" / "main.yml") for path in roles
                if (path / "defaults" / "main.yml").exists()]
    templates = sorted(str(path) for role in roles for path in (role / "templates").glob("*.j2"))
    assert templates
    play = [{
        "name": "Render the templates", "hosts": "all", "connection": "local", "gather_facts": False,
        "vars_files": defaults,
        "tasks": [
            {"name": "Pretend to be a Debian 12 node", "ansible.builtin.set_fact": {"ansible_facts": {
                "os_family": "Debian", "distribution": "Debian", "distribution_release": "bookworm",
                "distribution_major_version": "12", "architecture": "x86_64", "processor_vcpus": 2,
                "memtotal_mb": 4096, "kernel": "6.1.0-28-amd64"}}},
            {"name": "Render", "loop": templates,
             "ansible.builtin.debug": {"msg": "{{ lookup('ansible.builtin.template', item) }}"}},
        ],
    }]
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump(play))
    result = _ansible_playbook(["-i", inventory, playbook], ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok: [frontend001] => (item=") == len(templates)
    assert "compute001 np=2" in result.stdout  # Torque's nodes file
    assert "Range compute002 " in result.stdout  # OrangeFS's data handle ranges


# --- every task of every role and playbook: module names and package lists ---

def _task_keywords() -> set[str]:
    from ansible.playbook.task import Task
    return set(Task.fattributes) | {"args", "action", "local_action"}


def _tasks_in(items, keywords: set[str]):
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks_in(task.get(section), keywords)


def _task_files() -> list[tuple[str, list]]:
    """(name, task list) for every task and handler file of every role and every play."""
    files: list[tuple[str, list]] = []
    for path in sorted(ROLES.glob("*/tasks/*.yml")) + sorted(ROLES.glob("*/handlers/*.yml")):
        files.append((str(path.relative_to(REPO)), yaml.safe_load(path.read_text()) or []))
    for path in _playbook_files():
        for play in yaml.safe_load(path.read_text()) or []:
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                files.append((f"{path.relative_to(REPO)}: {play.get('name')}", play.get(section) or []))
    return files


def _module_of(task: dict, keywords: set[str]) -> str | None:
    if any(section in task for section in ("block", "rescue", "always")):
        return None
    names = [key for key in task if key not in keywords and not key.startswith("with_")]
    assert len(names) == 1, f"task {task.get('name')!r} names no single module: {names}"
    return names[0]


def _builtin_modules() -> set[str]:
    """The modules ansible-core ships (documented in ansible/modules, as ``ansible-doc -l`` lists them)."""
    import ansible
    modules = Path(ansible.__file__).parent / "modules"
    return {f"ansible.builtin.{path.stem}" for path in modules.glob("*.py") if not path.stem.startswith("_")}


def test_every_task_names_an_ansible_builtin_module():
    builtin = _builtin_modules()
    keywords = _task_keywords()
    wrong = []
    for name, tasks in _task_files():
        for task in _tasks_in(tasks, keywords):
            module = _module_of(task, keywords)
            if module is None:
                continue
            if module not in builtin:
                wrong.append(f"{name}: {task.get('name')!r} uses {module}")
    assert not wrong, "\n".join(wrong)


def test_plays_import_with_fully_qualified_names():
    for path in _playbook_files():
        for play in yaml.safe_load(path.read_text()) or []:
            imports = [key for key in play if key.endswith("import_playbook")]
            assert all(key == "ansible.builtin.import_playbook" for key in imports), path.name


def test_no_package_is_installed_in_a_loop():
    keywords = _task_keywords()
    looped = []
    for name, tasks in _task_files():
        for task in _tasks_in(tasks, keywords):
            if _module_of(task, keywords) in MODULE_PACKAGE_INSTALLERS and (
                    "loop" in task or any(key.startswith("with_") for key in task)):
                looped.append(f"{name}: {task.get('name')!r}")
    assert not looped, "install package lists in one task:\n" + "\n".join(looped)


def test_readme_marks_the_untested_services():
    """playbooks/README.rst's table names every group and says these services are not tested on nodes."""
    text = (PLAYBOOKS / "README.rst").read_text()
    assert "Roles and how they are tested" in text
    section = text.split("Roles and how they are tested", 1)[1]
    missing = [group for group in [*EXPECTED_TASKS, *ALIASES] if f"``{group}``" not in section]
    assert not missing, f"README.rst's table does not name {missing}"
    assert section.count("**not tested on real nodes**") == 4
