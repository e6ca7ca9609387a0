"""What every command of the CLI shares: the configuration, the state store, the cluster
operations' callbacks (progress lines, confirmation, the setup's live view) and the
copy-paste hints. The command modules import this, never each other."""
from __future__ import annotations

import logging
import shlex
import sys

from elasticcluster.exceptions import UsageError
from elasticcluster.paths import DEFAULT_CONFIG, DEFAULT_STORAGE

log = logging.getLogger("elasticcluster")


def ensure_config(args) -> None:
    """First run: deploy the commented template config to the default path (seed 4.2)."""
    if not args.default_config:
        return
    from elasticcluster.config.reader import deploy_default_config

    if deploy_default_config(args.config_path):
        log.warning("Deploying default configuration file to %s; edit it to add your clouds "
                    "(its local-* templates need no cloud account)", args.config_path)


def load_config(args):
    """The configuration of ``-c`` (deployed on first run), its secrets masked in every log."""
    from elasticcluster.config import load_config as load
    from elasticcluster.redact import register_secrets

    ensure_config(args)
    config = load(args.config_path)
    register_secrets(config.secrets)
    return config


def repository(args):
    from elasticcluster.repository import DiskRepository

    return DiskRepository(args.storage_path)


def configurator(args, config=None):
    from elasticcluster.conf import Configurator

    return Configurator(load_config(args) if config is None else config, args.storage_path,
                        repository(args))


def events(args):
    """The cluster operations' callbacks for this command line."""
    from elasticcluster.cli.progress import listener_for
    from elasticcluster.operations import Events

    def progress(message: str) -> None:
        if args.verbose >= 1:
            log.info("%s", message)
        else:
            print(message, file=sys.stderr, flush=True)

    def confirm(question: str) -> bool:
        """Ask ``question`` unless --yes; refuse when nobody can answer."""
        if getattr(args, "yes", False):
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{question} Nobody can answer on this input: add --yes to go ahead")
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    return Events(progress=progress, confirm=confirm,
                  setup_listener=lambda hosts: listener_for(hosts, args.verbose),
                  ansible_verbosity=args.verbose)


def max_workers(args) -> int | None:
    """-p N, or one at a time with -vvvv (libcloud's debug output stays readable)."""
    if args.verbose >= 4:
        return 1
    return getattr(args, "max_concurrent_requests", None)


def command_prefix(args) -> str:
    """``elasticcluster`` plus the -c/-s options the user gave, for copy-paste hints."""
    words = ["elasticcluster"]
    if not args.default_config:
        words += ["-c", str(args.config)]
    if args.storage != DEFAULT_STORAGE:
        words += ["-s", str(args.storage)]
    return shlex.join(words)


__all__ = ["DEFAULT_CONFIG", "DEFAULT_STORAGE", "command_prefix", "configurator", "ensure_config",
           "events", "load_config", "max_workers", "repository"]
