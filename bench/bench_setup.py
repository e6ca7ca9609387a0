#!/usr/bin/env python3
"""Setup benchmark: plain ``ansible-playbook`` defaults against ``elasticcluster setup`` (issue 5, "Speed").

Usage::

    .venv/bin/python bench/bench_setup.py [--runs N] [--sizes 4,8] [--no-mitogen]

The playbook is ``bench/playbooks/small.yml``: gather facts, template one file
into /tmp on each node, install nothing. For each size N (default 4 and 8) a
local-cloud cluster ``bench-setup-PID-N`` (1 frontend + N-1 compute) is
started once with ``--no-setup`` in a fresh HOME whose config is the bundled
``local-slurm`` template with its cloud, login and setup sections copied from
``templates/config``, the setup section gaining
``playbook_path = bench/playbooks/small.yml``. Then, ``--runs`` times
(default 5), each timed as a whole process:

(a) **plain defaults**: ``ansible-playbook -i STORAGE/NAME.inventory.json small.yml``
    with every ``ANSIBLE_*`` variable removed from the environment and
    ``ANSIBLE_CONFIG`` naming an empty file: forks 5, no pipelining, implicit
    fact gathering on every run, no fact cache, and Ansible's default
    ``-C -o ControlMaster=auto -o ControlPersist=60s``. The inventory is the
    one elasticcluster writes (it only holds connection variables: hosts,
    addresses, user, key, known_hosts, become, python interpreter).
    *cold*: the OpenSSH control masters under HOME/.ansible/cp are closed
    first; *warm*: run again right after (masters still up, as Ansible's
    defaults give a second run within 60 s).
(b) **elasticcluster**: ``elasticcluster setup NAME`` (pipelining, forks sized
    to the cluster, smart gathering with a jsonfile fact cache,
    ControlPersist 300 s, its callback). *first*: control masters closed and
    the fact cache (STORAGE/NAME.facts) removed, as after ``start``;
    *repeat*: run again right after (facts cached, masters up).
(c) **elasticcluster + mitogen**: as (b) with ``ansible_strategy = mitogen_linear``
    in the setup section (a second config file, passed with ``-c``), if
    ``import ansible_mitogen`` works in this Python (``pip install mitogen``);
    an untimed trial run says whether its strategy loads with the installed
    ansible-core, and why not if it does not.

(a) and (b) alternate which goes first, run by run. One untimed warm-up of
each comes first (the first ``setup`` also writes the inventory (a) uses).

It prints the medians, and the ratios plain/elasticcluster: the headline ratio
(target: elasticcluster at least 2x faster) compares like with like on a
first contact, (a) cold against (b) first; warm (a) against repeat (b) is shown
too. The clusters are stopped, and anything left of them removed by label, in
``finally``. Exit status 0 unless the benchmark itself fails.
"""
from __future__ import annotations

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local_common import (  # noqa: E402
    ROOT,
    VENV_BIN,
    clean_env,
    close_ssh_masters,
    docker_ok,
    ec,
    fresh_home,
    machine_note,
    median,
    remove_cluster,
    sigterm_as_exit,
)

PLAYBOOK = ROOT / "bench" / "playbooks" / "small.yml"
BUNDLED_CONFIG = ROOT / "templates" / "config"
TEMPLATE = "local-slurm"
TARGET = 2.0
TIMEOUT = 600


def write_configs(home: str) -> tuple[Path, Path]:
    """HOME/.elasticcluster/config (the bundled local-slurm with playbook_path) and a mitogen variant."""
    bundled = configparser.RawConfigParser(interpolation=None)
    bundled.optionxform = str
    bundled.read(BUNDLED_CONFIG)
    cluster = dict(bundled[f"cluster/{TEMPLATE}"])
    sections = {
        f"cloud/{cluster['cloud']}": dict(bundled[f"cloud/{cluster['cloud']}"]),
        f"login/{cluster['login']}": dict(bundled[f"login/{cluster['login']}"]),
        f"setup/{cluster['setup_provider']}": dict(bundled[f"setup/{cluster['setup_provider']}"]),
        f"cluster/{TEMPLATE}": cluster,
    }
    sections[f"setup/{cluster['setup_provider']}"]["playbook_path"] = str(PLAYBOOK)
    folder = Path(home) / ".elasticcluster"
    folder.mkdir(parents=True, exist_ok=True)

    def write(path: Path, extra_setup: dict) -> None:
        lines = ["# written by bench/bench_setup.py: the bundled local-slurm template and its sections"]
        for title, keys in sections.items():
            if title.startswith("setup/"):
                keys = {**keys, **extra_setup}
            lines += ["", f"[{title}]", *[f"{k} = {v}" for k, v in keys.items()]]
        path.write_text("\n".join(lines) + "\n")

    plain, mitogen = folder / "config", folder / "config-mitogen"
    write(plain, {})
    write(mitogen, {"ansible_strategy": "mitogen_linear"})
    return plain, mitogen


class Bench:
    def __init__(self, home: str, plain_config: Path, mitogen_config: Path):
        self.home = home
        self.storage = Path(home) / ".elasticcluster" / "storage"
        self.plain_config = plain_config
        self.mitogen_config = mitogen_config
        self.empty_cfg = Path(home) / "empty-ansible.cfg"
        self.empty_cfg.write_text("")

    def plain(self, name: str) -> float:
        """(a): ansible-playbook with Ansible's defaults."""
        env = clean_env(self.home)
        env["ANSIBLE_CONFIG"] = str(self.empty_cfg)
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.storage / name / "inventory.json"),
                   str(PLAYBOOK)]
        t0 = time.monotonic()
        proc = subprocess.run(command, env=env, cwd=self.home, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"plain ansible-playbook on {name} exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}")
        if "TASK [Gathering Facts]" not in proc.stdout:  # no fact cache: every plain run gathers
            raise RuntimeError(f"plain ansible-playbook on {name} did not gather facts:\n"
                               f"{proc.stdout[-2000:]}")
        return elapsed

    def elasticcluster(self, name: str, mitogen: bool = False) -> float:
        """(b)/(c): elasticcluster setup NAME."""
        config = self.mitogen_config if mitogen else self.plain_config
        t0 = time.monotonic()
        proc = ec(self.home, "-c", str(config), "setup", name, timeout=TIMEOUT, check=False)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            log = self.storage / name / "ansible.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"elasticcluster setup {name}{' (mitogen)' if mitogen else ''} exited "
                               f"{proc.returncode}:\n{proc.stderr[-2000:]}\n{tail}")
        return elapsed

    def cold(self, name: str) -> None:
        """As right after `start`: no OpenSSH control master, no cached facts."""
        close_ssh_masters(self.home)
        shutil.rmtree(self.storage / name / "facts", ignore_errors=True)


def mitogen_status() -> str | None:
    """None when ansible_mitogen imports here, else why not."""
    proc = subprocess.run([sys.executable, "-c", "import ansible_mitogen.plugins.strategy"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    if proc.returncode != 0:
        return "mitogen is not installed in this Python (pip install mitogen): " + \
               (proc.stdout.strip().splitlines() or [""])[-1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="4,8", help="comma-separated node counts (default 4,8)")
    parser.add_argument("--no-mitogen", action="store_true", help="skip (c)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not docker_ok():
        return 1
    sigterm_as_exit()
    load0 = os.getloadavg()
    home = fresh_home("bench-setup")
    plain_config, mitogen_config = write_configs(home)
    bench = Bench(home, plain_config, mitogen_config)
    mitogen_note = "skipped (--no-mitogen)" if args.no_mitogen else mitogen_status()
    use_mitogen = mitogen_note is None
    names = {n: f"bench-setup-{os.getpid()}-{n}" for n in sizes}
    kinds = ("a_cold", "a_warm", "b_first", "b_repeat", "c_first", "c_repeat")
    results = {n: {k: [] for k in kinds} for n in sizes}
    started: list[str] = []
    try:
        for n in sizes:
            name = names[n]
            print(f"N={n}: starting {name} (--no-setup) in HOME={home} ...", file=sys.stderr, flush=True)
            started.append(name)
            ec(home, "start", TEMPLATE, "--nodes", f"1:frontend,{n - 1}:compute", "--no-setup", "-n", name,
               timeout=TIMEOUT)
            # warm-up, untimed: setup writes the inventory that (a) uses
            bench.elasticcluster(name)
            bench.plain(name)
            if use_mitogen:
                try:
                    bench.cold(name)
                    bench.elasticcluster(name, mitogen=True)
                    mitogen_note = None
                except RuntimeError as err:
                    use_mitogen = False
                    mitogen_note = "its strategy does not work with this ansible-core: " + \
                        " | ".join(line.strip() for line in str(err).splitlines()
                                   if "ERROR" in line or "rror" in line)[:600]
            for i in range(args.runs):
                blocks = ["a", "b"] if i % 2 == 0 else ["b", "a"]
                if use_mitogen:
                    blocks.append("c")
                for block in blocks:
                    bench.cold(name)
                    if block == "a":
                        results[n]["a_cold"].append(bench.plain(name))
                        results[n]["a_warm"].append(bench.plain(name))
                    else:
                        mitogen = block == "c"
                        results[n][f"{block}_first"].append(bench.elasticcluster(name, mitogen))
                        results[n][f"{block}_repeat"].append(bench.elasticcluster(name, mitogen))
                r = results[n]
                print(f"  N={n} run {i + 1}/{args.runs}: plain cold {r['a_cold'][-1]:.2f}s warm "
                      f"{r['a_warm'][-1]:.2f}s; elasticcluster first {r['b_first'][-1]:.2f}s repeat "
                      f"{r['b_repeat'][-1]:.2f}s"
                      + (f"; mitogen first {r['c_first'][-1]:.2f}s repeat {r['c_repeat'][-1]:.2f}s"
                         if use_mitogen else ""), file=sys.stderr, flush=True)
            close_ssh_masters(home)
            remove_cluster(home, name)
            started.remove(name)
    finally:
        try:
            close_ssh_masters(home)
        except (OSError, subprocess.SubprocessError):
            pass
        for name in started:
            remove_cluster(home, name)
        shutil.rmtree(home, ignore_errors=True)

    print()
    print(f"Setup with bench/playbooks/small.yml (gather facts + template), median of {args.runs} runs, "
          "seconds per whole process")
    head = f"{'N':>3}  {'plain cold':>10}  {'plain warm':>10}  {'ec first':>8}  {'ec repeat':>9}"
    if use_mitogen:
        head += f"  {'mitogen 1st':>11}  {'mitogen rep':>11}"
    print(head)
    for n in sizes:
        m = {k: median(v) for k, v in results[n].items()}
        row = (f"{n:>3}  {m['a_cold']:>10.2f}  {m['a_warm']:>10.2f}  {m['b_first']:>8.2f}  "
               f"{m['b_repeat']:>9.2f}")
        if use_mitogen:
            row += f"  {m['c_first']:>11.2f}  {m['c_repeat']:>11.2f}"
        print(row)
    labels = {"a_cold": "plain cold", "a_warm": "plain warm", "b_first": "ec first", "b_repeat": "ec repeat",
              "c_first": "mitogen first", "c_repeat": "mitogen repeat"}
    for n in sizes:
        for kind, values in results[n].items():
            if values:
                print(f"  N={n} {labels[kind]:<15} runs: {' '.join(f'{v:.2f}' for v in values)}  "
                      f"(min {min(values):.2f})")
    print()
    print(f"Ratio plain / elasticcluster (target: >= {TARGET:.1f}x, i.e. elasticcluster at least 2x faster).")
    print("The headline ratio is first contact: plain cold vs elasticcluster first run (no fact cache, no")
    print("SSH control master); warm plain vs repeat run (fact cache used, masters up) is shown as well.")
    for n in sizes:
        m = {k: median(v) for k, v in results[n].items()}
        first, repeat = m["a_cold"] / m["b_first"], m["a_warm"] / m["b_repeat"]
        line = (f"  N={n}: first-run {first:.2f}x {'ok' if first >= TARGET else 'MISSED'};  "
                f"repeat-run {repeat:.2f}x {'ok' if repeat >= TARGET else 'MISSED'}")
        if use_mitogen:
            line += (f";  mitogen first-run {m['a_cold'] / m['c_first']:.2f}x, "
                     f"repeat-run {m['a_warm'] / m['c_repeat']:.2f}x")
        print(line)
    print()
    if use_mitogen:
        import importlib.metadata as md
        print(f"mitogen {md.version('mitogen')}: ansible_strategy = mitogen_linear loads and runs with "
              f"ansible-core {md.version('ansible-core')} (times above)")
    else:
        print(f"mitogen: not measured: {mitogen_note}")
    print(machine_note(load0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
