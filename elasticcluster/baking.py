"""Baked images: a set-up node made into an image of its cloud, without its secrets.

``bake_node`` makes one image (libcloud's ``create_image``) of one node. Before
the cloud is asked, the node's per-node and per-cluster secrets (SSH host keys,
the munge key, ...: the list of ``playbooks/bake-secrets.txt``, or of the setup
section's ``bake_secrets``) are moved over SSH into ``/run/elasticcluster-bake``,
a tmpfs that neither ``docker commit`` nor a cloud's disk snapshot includes.
They are moved back once the image is ready, also when making it fails or is
interrupted; should elasticcluster be killed meanwhile, a timer on the node
moves them back (``FALLBACK_DELAY``). ``delete_images`` deletes images that a
cluster recorded.
"""
from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from elasticcluster import lifecycle, ssh
from elasticcluster.cluster import Cluster, Node
from elasticcluster.exceptions import CloudError, ConfigurationError
from elasticcluster.resources import bundled_dir
from elasticcluster.tags import TAG_CLUSTER

log = logging.getLogger("elasticcluster")

#: where a node keeps its secrets while its image is made (a tmpfs on systemd systems)
STAGE = "/run/elasticcluster-bake"
#: how long the cloud may take to make an image ready
READY_TIMEOUT = 1800.0
#: after this many seconds a timer on the node moves its secrets back by itself
FALLBACK_DELAY = int(READY_TIMEOUT) + 300
#: the tag (or label) that says which kind of node an image was made for
TAG_KIND = "elasticcluster-kind"
#: a path of the secrets list: absolute, no white space or shell syntax but glob characters
_PATH = re.compile(r"/[^\s'\"`$\\;&|<>(){}!#]*")


@dataclass(frozen=True)
class SecretPath:
    """One line of the secrets list: a path or glob, moved away or (``empty``) emptied."""

    pattern: str
    empty: bool = False


def secrets_file(cluster: Cluster) -> Path:
    """The secrets list of ``cluster``: its setup section's ``bake_secrets``, else the bundled one."""
    spec = cluster.template_spec
    chosen = (spec.setup or {}).get("bake_secrets") if spec is not None else None
    return Path(chosen).expanduser() if chosen else bundled_dir("playbooks") / "bake-secrets.txt"


def read_secrets(path: Path) -> list[SecretPath]:
    """The paths of a secrets list; ConfigurationError naming FILE:LINE for a bad line."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigurationError(f"bake_secrets = {path}: cannot be read ({err.strerror or err})") from None
    found, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        pattern, options = words[0], words[1:]
        if not _PATH.fullmatch(pattern) or options not in ([], ["empty"]):
            problems.append(f"{path}:{number}: {line.strip()!r}: expected an absolute path or glob "
                            "(no spaces, quotes or shell syntax), optionally followed by 'empty'")
        elif pattern.rstrip("/") in ("", "/home") or pattern.startswith("/home/"):
            problems.append(f"{path}:{number}: {pattern}: paths under /home are never moved (the local "
                            "cloud shares one /home between the nodes)")
        else:
            found.append(SecretPath(pattern, bool(options)))
    if problems:
        raise ConfigurationError(f"the list of what baked images leave out ({path}) has errors", problems)
    return found


def image_name(cluster: str, kind: str, when: float | None = None) -> str:
    """``elasticcluster-CLUSTER-KIND-YYYYmmdd-HHMMSS``: lower case letters, digits and '-', at most
    63 characters, so that EC2, GCE and OpenStack all take it as an image name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    middle = re.sub(r"[^a-z0-9]+", "-", f"{cluster}-{kind}".lower()).strip("-")
    return f"elasticcluster-{middle[:63 - len('elasticcluster--') - len(stamp)].strip('-')}-{stamp}"


# -- on the node ------------------------------------------------------------------------------

_RESTORE = """#!/bin/sh
# elasticcluster bake: put back what was moved into $stage while an image was made
stage=@STAGE@
[ -f "$stage/moved" ] || exit 0
status=0
while read -r mode path; do
    [ -e "$stage$path" ] || [ -L "$stage$path" ] || continue
    # a file something wrote meanwhile (a daemon's state) is newer than the one moved away
    if [ "$mode" = move ] && { [ -e "$path" ] || [ -L "$path" ]; }; then continue; fi
    mkdir -p "$(dirname "$path")" && mv -f "$stage$path" "$path" || status=1
done < "$stage/moved"
[ "$status" = 0 ] || exit "$status"
sync
systemctl stop elasticcluster-bake-restore.timer >/dev/null 2>&1
pid=$(cat "$stage/fallback.pid" 2>/dev/null)
rm -rf "$stage"
# the fallback leads a session of its own (setsid): its sleep goes with it
if [ -n "$pid" ] && [ "$pid" != "$$" ]; then kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null; fi
exit 0
"""


def stage_script(paths: list[SecretPath], fallback_delay: int = FALLBACK_DELAY, stage: str = STAGE) -> str:
    """The shell script that moves ``paths`` into ``stage`` (after putting back what an earlier
    bake left there) and arms the timer that moves them back by itself; it prints each path."""
    lines = [
        "set -u",
        "umask 077",
        f"stage={shlex.quote(stage)}",
        # /run is mounted noexec on many systems (Docker's tmpfs too): scripts there run through sh
        'if [ -f "$stage/restore" ]; then sh "$stage/restore" || { echo "cannot put back the files '
        'an earlier bake left in $stage" >&2; exit 3; }; fi',
        'if [ -e "$stage/moved" ]; then echo "$stage holds files of an earlier bake" >&2; exit 3; fi',
        'rm -rf "$stage" && mkdir -p "$stage" || exit 3',
        "cat > \"$stage/restore\" <<'ELASTICCLUSTER_RESTORE'",
        _RESTORE.replace("@STAGE@", shlex.quote(stage)).rstrip("\n"),
        "ELASTICCLUSTER_RESTORE",
        'chmod 700 "$stage/restore" && : > "$stage/moved" || exit 3',
        "systemctl stop elasticcluster-bake-restore.timer >/dev/null 2>&1",
        f'if ! systemd-run --quiet --unit=elasticcluster-bake-restore --on-active={fallback_delay} '
        '/bin/sh "$stage/restore" >/dev/null 2>&1; then',
        f'    setsid nohup sh -c "sleep {fallback_delay}; exec sh $stage/restore" '
        '</dev/null >/dev/null 2>&1 &',
        '    echo $! > "$stage/fallback.pid"',
        "fi",
    ]
    for path in paths:
        mode = "empty" if path.empty else "move"
        # the list is written before the move: a kill between the two loses nothing
        action = ('cp -a "$path" "$stage$path" && : > "$path"' if path.empty
                  else 'mv "$path" "$stage$path"')
        lines += [
            f"for path in {path.pattern}; do",
            '    [ -e "$path" ] || [ -L "$path" ] || continue',
            '    case "$path" in /home|/home/*|"$stage"|"$stage"/*) continue ;; esac',
            '    mkdir -p "$stage$(dirname "$path")" || exit 4',
            f'    echo "{mode} $path" >> "$stage/moved"',
            f"    {action} || exit 4",
            '    echo "$path"',
            "done",
        ]
    lines.append("sync")
    return "\n".join(lines) + "\n"


def restore_script(stage: str = STAGE) -> str:
    """Put back what ``stage_script`` moved; fails unless nothing is left staged."""
    stage = shlex.quote(stage)
    return (f"if [ -f {stage}/restore ]; then sh {stage}/restore || exit $?; fi\n"
            f'if [ -e {stage}/moved ]; then echo "files are still in {stage}" >&2; exit 5; fi\n')


def _as_root(login: ssh.Login, script: str) -> str:
    command = f"sh -c {shlex.quote(script)}"
    if login.user == "root":
        return command
    if not login.become:
        raise CloudError(f"baking an image moves the node's secrets away as root: user {login.user} "
                         "cannot (set image_sudo = yes in the login section)")
    return f"sudo -n -u {shlex.quote(login.become_user)} {command}"


def _open(cluster: Cluster, node: Node, timeout: float):
    """An open Fabric connection to ``node`` (through the frontend when it has no public address),
    and that gateway's connection (or None)."""
    gateway = None
    try:
        frontend = cluster.get_frontend_node()
    except Exception:  # noqa: BLE001 (no frontend: a direct connection)
        frontend = None
    if ssh.needs_gateway(node, frontend) and not ssh.Login.of(cluster).proxy_command:
        gateway = ssh.connection(cluster, frontend, timeout=timeout)
    conn = ssh.connection(cluster, node, timeout=timeout, gateway=gateway)
    try:
        conn.open()
        # the connection must outlive the wait for the image: new ones fail while host keys are away
        conn.transport.set_keepalive(15)
    except Exception as err:  # noqa: BLE001 (any failure to connect is reported the same way)
        _close(conn, gateway)
        status, detail = ssh.classify(err)
        raise CloudError(f"{node.name}: cannot log in over SSH to bake it ({status}: {detail})") from None
    return conn, gateway


def _close(conn, gateway) -> None:
    conn.close()
    if gateway is not None:
        gateway.close()


def _run(conn, login: ssh.Login, script: str, timeout: float):
    return conn.run(_as_root(login, script), hide=True, warn=True, in_stream=False, timeout=timeout)


@contextmanager
def secrets_staged(cluster: Cluster, node: Node, paths: list[SecretPath], *, timeout: float = 30,
                   progress: Callable[[str], None] = lambda message: None):
    """Move ``paths`` of ``node`` into ``STAGE`` for the time of the ``with`` block; they are put
    back over the same connection (new SSH logins fail while the host keys are away) whatever
    happens in the block, a second Ctrl-C included."""
    login = ssh.Login.of(cluster, node)
    conn, gateway = _open(cluster, node, timeout)
    try:
        failure = None
        try:
            with lifecycle.signals_deferred():  # a Ctrl-C waits for the move (seconds), then undoes it
                result = _run(conn, login, stage_script(paths), timeout=max(timeout, 120))
            moved = [line for line in result.stdout.splitlines() if line.startswith("/")]
            if result.exited != 0:
                raise CloudError(f"{node.name}: could not move its secrets away before making its image "
                                 f"(exit {result.exited}: {result.stderr.strip()[-300:]}); nothing was made")
            log.debug("%s: moved to %s while its image is made: %s", node.name, STAGE, ", ".join(moved))
            progress(f"{node.name}: {len(moved)} secret file(s) moved to {STAGE} while its image is made")
            yield moved
        except BaseException as err:
            failure = err
            raise
        finally:
            with lifecycle.signals_deferred():
                try:
                    _restore(conn, login, node, timeout)
                except CloudError as err:
                    if failure is None:
                        raise
                    log.error("%s", err)
        progress(f"{node.name}: its secret files are back in place")
    finally:
        _close(conn, gateway)


def _restore(conn, login: ssh.Login, node: Node, timeout: float) -> None:
    try:
        result = _run(conn, login, restore_script(), timeout=max(timeout, 120))
        failed = result.exited != 0 and f"exit {result.exited}: {result.stderr.strip()[-300:]}"
    except Exception as err:  # noqa: BLE001 (a dropped connection is reported like a failure)
        failed = f"{type(err).__name__}: {err}"
    if failed:
        raise CloudError(f"{node.name}: could not move its secret files back from {STAGE} ({failed}); a "
                         f"timer on the node moves them back within {FALLBACK_DELAY // 60} minutes, and "
                         "until then it may refuse new SSH logins")


# -- on the cloud -----------------------------------------------------------------------------


def bake_node(provider, cluster: Cluster, node: Node, instance, kind: str, paths: list[SecretPath], *,
              base: str | None, groups: list[str] | None = None,
              progress: Callable[[str], None] = lambda message: None,
              ready_timeout: float = READY_TIMEOUT) -> dict:
    """Make an image of ``node`` (the cloud's ``instance``) without its secrets, record it as the
    image of ``kind`` (the one it replaces goes to ``old_images``, for the caller to delete) and
    wait until the cloud says it is ready. Returns the record. ``groups``: the kind's Ansible
    groups, whose software the image holds (a node from it skips installing them again)."""
    name = image_name(cluster.name, kind)
    with secrets_staged(cluster, node, paths, progress=progress):
        progress(f"{kind}: making image {name} of {node.name}")
        with lifecycle.signals_deferred():  # what the cloud made is recorded before any Ctrl-C acts
            image = provider.create_image(instance, name, description=(
                f"elasticcluster: {kind} node of cluster {cluster.name}, made from {node.name}"))
            record = {"id": str(image.id), "name": name, "from": node.name, "made": int(time.time()),
                      "base": base, "groups": list(groups) if groups is not None else None}
            images = cluster.images
            old = images.get(kind)
            if old and old["id"] != record["id"]:
                cluster.extra["old_images"] = [*cluster.old_images, old]
            images[kind] = record
            cluster.extra["images"] = images
            cluster.save()
        provider.tag_image(image, {TAG_CLUSTER: provider.tag_value(cluster.name), TAG_KIND: kind})
        provider.wait_image_ready(image.id, timeout=ready_timeout)
        progress(f"{kind}: image {record['id']} is ready")
    return record


def delete_images(provider, records: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Delete the images of ``records``: (those deleted or already gone, {id: why} of the others)."""
    done, failed = [], {}
    for record in records:
        try:
            provider.delete_image(record["id"])
        except CloudError as err:
            failed[record["id"]] = str(err)
        else:
            done.append(record)
    return done, failed


__all__ = ["FALLBACK_DELAY", "READY_TIMEOUT", "STAGE", "TAG_KIND", "SecretPath",
           "bake_node", "delete_images", "image_name", "read_secrets", "secrets_file", "secrets_staged",
           "stage_script"]
