"""The ``elasticcluster`` command line (seed 4.3).

Command modules register their subcommands here; errors are turned into one
message and an exit status in ``main`` (tracebacks only with ``-vvv``).
Heavy libraries are imported by the commands that need them, never here.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from elasticcluster import __version__
from elasticcluster.cli import clouds, lifecycle, logsetup, reports
from elasticcluster.exceptions import ElasticClusterError, Interrupted
from elasticcluster.paths import DEFAULT_CONFIG, DEFAULT_STORAGE

log = logging.getLogger("elasticcluster")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elasticcluster",
        description="Create, set up, grow and tear down compute clusters on clouds.",
    )
    parser.add_argument("--version", action="version", version=f"elasticcluster {__version__}")
    _global_options(parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", dest="verbose_sub", action="count", default=0,
                        help="more output; repeat for more (-vvv shows tracebacks)")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    subparsers.required = True
    lifecycle.register(subparsers, common)
    reports.register(subparsers, common)
    clouds.register(subparsers, common)
    return parser


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output; repeat for more (-vvv shows tracebacks, "
                             "-vvvv also starts nodes one at a time)")
    parser.add_argument("-s", "--storage", metavar="PATH", default=DEFAULT_STORAGE,
                        help=f"folder where started clusters are remembered (default: {DEFAULT_STORAGE})")
    parser.add_argument("-c", "--config", metavar="PATH", default=DEFAULT_CONFIG,
                        help="configuration file; every PATH.d/*.conf is read too "
                             f"(default: {DEFAULT_CONFIG})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if extra and not getattr(args, "takes_extra", None):
        parser.error(f"{args.command} takes no arguments after --")
    args.extra = extra
    args.verbose = args.verbose + getattr(args, "verbose_sub", 0)
    logsetup.configure(args.verbose)
    args.config_path = Path(args.config).expanduser()
    args.storage_path = Path(args.storage).expanduser()
    args.default_config = args.config == DEFAULT_CONFIG
    try:
        return args.func(args) or 0
    except ElasticClusterError as err:
        if isinstance(err, Interrupted):
            _ignore_interruptions()  # a second Ctrl-C must not cut the message short
        if args.verbose >= 3:
            log.exception("%s", err)
        else:
            log.error("%s", err)
        return err.exit_status
    except KeyboardInterrupt:
        _ignore_interruptions()
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug: say so plainly, the traceback comes with -vvv
        if args.verbose >= 3:
            log.exception("unexpected error")
        else:
            log.error("unexpected error: %s: %s (run with -vvv for the traceback)",
                      type(err).__name__, err)
        return 1


def _ignore_interruptions() -> None:
    """The command is over: more Ctrl-C or SIGTERM while it says so change nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
