"""What ``list-templates`` reports, cached between runs.

Loading the configuration means configobj, cerberus (and sometimes
libcloud): a few hundred milliseconds. The report (template summaries, why
templates were skipped, the warnings given) holds no secret, so it is kept
in ``$XDG_CACHE_HOME/elasticcluster/`` (mode 0600) and used again while
nothing it was made from has changed: the config files (path, size, mtime,
inode, mode), the files it consulted (mapping files, libcloud's provider
list), elasticcluster's version and the environment variables the config
refers to (compared through a salted hash, never stored), and the installed
libcloud whose drivers' signatures the configuration was checked against. Set
ELASTICCLUSTER_NO_CACHE=1 to bypass it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from elasticcluster import __version__
from elasticcluster.config.reader import config_files

log = logging.getLogger("elasticcluster")
CACHE_FORMAT = 1


@dataclass
class TemplateReport:
    templates: list[dict]
    skipped: dict[str, list[str]]
    warnings: list[tuple[int, str]] = field(default_factory=list)

    def replay_warnings(self) -> None:
        for level, message in self.warnings:
            log.log(level, "%s", message)


def template_report(config_path: Path) -> TemplateReport:
    """The report for ``config_path``: from the cache when valid, else freshly loaded."""
    use_cache = not os.environ.get("ELASTICCLUSTER_NO_CACHE")
    cache_file = _cache_file(config_path)
    signature = _signature(config_path)
    if use_cache:
        cached = _read(cache_file, signature)
        if cached is not None:
            return cached
    report, env_names, consulted = _fresh(config_path)
    if use_cache:
        _write(cache_file, signature, report, env_names, consulted)
    return report


def _fresh(config_path: Path):
    from elasticcluster.config import load_config

    capture = _Capture()
    logger = logging.getLogger("elasticcluster")
    logger.addHandler(capture)
    propagate, logger.propagate = logger.propagate, False
    try:
        config = load_config(config_path)
    finally:
        logger.removeHandler(capture)
        logger.propagate = propagate
    from elasticcluster.redact import redact, register_secrets

    register_secrets(config.secrets)
    report = TemplateReport(
        templates=[t.summary() for t in config.templates.values()],
        skipped={name: [redact(p) for p in problems] for name, problems in config.skipped.items()},
        warnings=[(level, redact(message)) for level, message in capture.records],
    )
    env_names = _env_names(config.files)
    consulted = _consulted_files()
    return report, env_names, consulted


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.records.append((record.levelno, record.getMessage()))
        else:
            logging.getLogger().handle(record)


def _env_names(files: list[Path]) -> list[str]:
    """Environment variables the result may depend on."""
    import re

    from elasticcluster.cloud_catalog import mapped_families

    names = {"HOME"}
    for family in mapped_families().values():
        for spec in family.keys.values():
            names.update(spec.env)
    for file in files:
        try:
            names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", file.read_text(errors="replace")))
        except OSError:
            pass
    return sorted(names)


def _consulted_files() -> list[str]:
    from elasticcluster.resources import bundled_dir

    files = [str(p) for p in sorted(bundled_dir("drivers").glob("*.toml"))]
    libcloud = sys.modules.get("libcloud.compute.providers")
    if libcloud is not None:
        files.append(libcloud.__file__)
    if "elasticcluster.driver_info" in sys.modules:
        # the drivers' signatures the templates were checked against (also read from a cache of
        # their own, without importing libcloud): a libcloud upgrade rewrites these files
        from elasticcluster.driver_info import consulted_files

        files += [f for f in consulted_files() if f not in files]
    return files


def _cache_file(config_path: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elasticcluster"
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:20]
    return base / f"templates-{digest}.json"


def _signature(config_path: Path) -> list:
    # the code that made the report too (a checkout or an upgrade within one version)
    code = Path(__file__).with_name("config")
    entries = [__version__, str(config_path.resolve()),
               [os.stat(code / name).st_mtime_ns for name in ("link.py", "schema.py")]]
    for file in config_files(config_path):
        st = file.stat()
        entries.append([str(file), st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode])
    return entries


def _stamp(paths: list[str]) -> list:
    out = []
    for path in paths:
        try:
            out.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            out.append([path, None])
    return out


def _env_digest(names: list[str], salt: str) -> str:
    text = json.dumps([[n, os.environ.get(n)] for n in names])
    return hashlib.sha256((salt + text).encode()).hexdigest()


def _read(cache_file: Path, signature: list) -> TemplateReport | None:
    try:
        with open(cache_file, encoding="utf-8") as stream:
            data = json.load(stream)
        if (data.get("format") != CACHE_FORMAT or data["signature"] != signature
                or data["consulted"] != _stamp([p for p, _ in data["consulted"]])
                or data["env_digest"] != _env_digest(data["env_names"], data["salt"])):
            return None
        report = data["report"]
        return TemplateReport(report["templates"], report["skipped"],
                              [tuple(w) for w in report["warnings"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(cache_file: Path, signature: list, report: TemplateReport, env_names: list[str],
           consulted: list[str]) -> None:
    import secrets
    import tempfile

    salt = secrets.token_hex(16)
    data = {
        "format": CACHE_FORMAT,
        "signature": signature,
        "consulted": _stamp(consulted),
        "env_names": env_names,
        "salt": salt,
        "env_digest": _env_digest(env_names, salt),
        "report": {"templates": report.templates, "skipped": report.skipped,
                   "warnings": report.warnings},
    }
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(tmp, cache_file)
    except OSError as err:
        log.debug("cannot write the template cache %s: %s", cache_file, err)
