"""A plain, non-editable install works: build a wheel, install it into a brand-new venv, run it.

This is the one test that uses the network: ``build`` fetches the build
backend and pip fetches the runtime dependencies from PyPI.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import elasticcluster

REPO = Path(__file__).resolve().parent.parent
#: what is copied to build from: the source tree without caches, venvs and build leftovers
IGNORE = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", "tests", "bench", ".ci")

pytestmark = pytest.mark.slow


def run(argv: list, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel installed: (venv, env for running it, work folder)."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    # build from a copy: the build writes build/ and *.egg-info next to setup.cfg
    shutil.copytree(REPO, source, ignore=IGNORE)
    dist = tmp / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source])
    (wheel,) = dist.glob("elasticcluster-*.whl")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv])
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    run([venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "--quiet", wheel],
        env=pip_env, cwd=tmp)

    home = tmp / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "LC_ALL": "C.UTF-8"}
    return venv, env, tmp


def test_list_templates_deploys_the_config_and_lists_local_slurm(installed):
    venv, env, tmp = installed
    home = Path(env["HOME"])
    assert list(home.iterdir()) == []
    proc = subprocess.run([venv / "bin" / "elasticcluster", "list-templates"], capture_output=True, text=True,
                          env=env, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = home / ".elasticcluster" / "config"
    assert config.is_file()
    assert "Deploying default configuration file" in proc.stderr and str(config) in proc.stderr
    assert "name:     local-slurm" in proc.stdout.splitlines()
    assert "Traceback" not in proc.stderr

    proc = subprocess.run([venv / "bin" / "elasticcluster", "list-templates", "--json", "local-*"],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = [t["name"] for t in json.loads(proc.stdout)["templates"]]
    assert "local-slurm" in names


INSPECT = """
    import importlib.util, json, sys, sysconfig
    from pathlib import Path
    import elasticcluster
    from elasticcluster import resources

    package = Path(elasticcluster.__file__).parent
    print(json.dumps({
        "package": str(package),
        "site": sysconfig.get_paths()["purelib"],
        "drivers": sorted(p.name for p in (package / "drivers").glob("*.toml")),
        "drivers_module": importlib.util.find_spec("elasticcluster.drivers") is not None,
        "config": (package / "templates" / "config").is_file(),
        "site_yml": (package / "playbooks" / "site.yml").is_file(),
        "bundled": {n: str(resources.bundled_dir(n)) for n in ("templates", "playbooks", "drivers")},
        "top_level": {n: importlib.util.find_spec(n) is not None for n in ("drivers", "templates", "playbooks")},
    }))
"""


def test_bundled_folders_are_inside_the_installed_package(installed):
    venv, env, tmp = installed
    proc = run([venv / "bin" / "python", "-c", textwrap.dedent(INSPECT)], env=env, cwd=tmp)
    info = json.loads(proc.stdout)
    site = Path(info["site"])
    package = Path(info["package"])
    assert package == site / "elasticcluster", "the installed copy is used, not the source tree"
    assert REPO not in package.parents
    assert {"ec2.toml", "openstack.toml", "gce.toml", "local.toml"} <= set(info["drivers"])
    assert info["drivers_module"]
    assert info["config"] and info["site_yml"]
    for name, folder in info["bundled"].items():
        assert Path(folder) == package / name
    # nothing leaks to the top of site-packages
    assert info["top_level"] == {"drivers": False, "templates": False, "playbooks": False}
    for name in ("drivers", "templates", "playbooks"):
        assert not (site / name).exists()
        assert not (site / f"{name}.py").exists()


def test_python_dash_m_in_the_new_venv(installed):
    venv, env, tmp = installed
    proc = run([venv / "bin" / "python", "-m", "elasticcluster", "--version"], env=env, cwd=tmp)
    assert proc.stdout.strip() == f"elasticcluster {elasticcluster.__version__}"


def test_list_in_the_new_venv(installed):
    venv, env, tmp = installed
    storage = tmp / "storage"
    script = textwrap.dedent(f"""
        from elasticcluster import Cluster, ClusterRepository
        cluster = Cluster("wheely", repository=ClusterRepository({str(storage)!r}), template="local-slurm")
        cluster.add_nodes("compute", 2, "img", "debian", "small", None)
        cluster.save()
    """)
    run([venv / "bin" / "python", "-c", script], env=env, cwd=tmp)
    proc = run([venv / "bin" / "elasticcluster", "-s", storage, "list", "--json"], env=env, cwd=tmp)
    assert json.loads(proc.stdout)["clusters"] == [
        {"name": "wheely", "template": "local-slurm", "cloud": None, "provider": None, "nodes": {"compute": 2}}]
