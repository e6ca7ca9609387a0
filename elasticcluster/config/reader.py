"""Read configuration files into sections, remembering where each value came from.

The main file (``-c PATH``) is read first, then every ``PATH.d/*.conf`` in
name order; a section given in several files gets the keys of all of them,
the later file winning. Values are strings here: ``%(key)s`` refers to
another key of the same section (or of ``[DEFAULT]``) and ``${NAME}`` to an
environment variable, so that secrets can stay out of the file.
"""
from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from elasticcluster.exceptions import ConfigurationError
from elasticcluster.paths import DEFAULT_CONFIG
from elasticcluster.redact import SECRET_KEY_NAME

log = logging.getLogger("elasticcluster")

DEFAULT_CONFIG_PATH = Path(DEFAULT_CONFIG)

SECTION_TYPES = ("cloud", "login", "setup", "cluster")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]")
_KEY = re.compile(r"^\s*([^\s=#;\[][^=]*?)\s*=")
_PERCENT = re.compile(r"%\(([^)]+)\)s|%%")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class Section:
    """One ``[type/name]`` section, merged over all files that give it."""

    type: str
    name: str
    header: Location
    values: dict[str, str] = field(default_factory=dict)
    where: dict[str, Location] = field(default_factory=dict)
    #: problems found while reading (e.g. a missing environment variable)
    problems: list[str] = field(default_factory=list)
    #: keys whose value came from the environment (``${NAME}``)
    from_env: set[str] = field(default_factory=set)

    @property
    def title(self) -> str:
        """The header as the user wrote it (a node section is ``[cluster/NAME/KIND]``)."""
        type_ = "cluster" if self.type == "node" else self.type
        return f"[{type_}/{self.name}]"

    def locate(self, key: str | None = None) -> str:
        """``file:line: [type/name]`` (and ``key`` when given) for messages."""
        where = self.where.get(key, self.header) if key else self.header
        text = f"{where}: {self.title}"
        return f"{text} {key}" if key else text


@dataclass
class RawConfig:
    files: list[Path]
    sections: dict[tuple[str, str], Section]


def config_files(path: Path) -> list[Path]:
    """The main file (when it exists) and every ``*.conf`` of ``PATH.d/``."""
    files = [path] if path.exists() else []
    folder = path.with_name(path.name + ".d")
    if folder.is_dir():
        files.extend(sorted(p for p in folder.glob("*.conf") if p.is_file() and not p.name.startswith(".")))
    return files


def deploy_default_config(path: Path) -> bool:
    """Write the bundled, fully commented config to ``path`` if nothing is there.

    Returns True when it wrote the file.
    """
    import shutil

    from elasticcluster.resources import default_config_template

    if path.exists() or path.with_name(path.name + ".d").is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.copyfile(default_config_template(), tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True


def read_config(path: Path) -> RawConfig:
    """Read ``path`` and ``path.d/*.conf``; raise ConfigurationError if none parse."""
    path = Path(os.path.expanduser(str(path)))
    files = config_files(path)
    if not files:
        raise ConfigurationError(
            f"configuration file {path} not found (nor any {path}.d/*.conf)",
            ["give an existing file with -c PATH, or run without -c to get a commented template "
             f"at {DEFAULT_CONFIG_PATH}"],
        )
    sections: dict[tuple[str, str], Section] = {}
    defaults: dict[str, str] = {}
    for file in files:
        for head, values, where in _parse_file(file):
            if head == "DEFAULT":
                defaults.update(values)
                continue
            if head == "storage":
                log.warning("%s: section [storage] (ElastiCluster 1.3) is ignored; give the "
                            "storage folder with -s PATH", where.get("", Location(str(file))))
                continue
            parsed = _section_type(head)
            if parsed is None:
                log.warning("%s: section [%s] is not of a known type (cloud/NAME, login/NAME, "
                            "setup/NAME, cluster/NAME, cluster/NAME/KIND); ignored",
                            where.get("", Location(str(file))), head)
                continue
            header = where.pop("", Location(str(file)))
            section = sections.setdefault(parsed, Section(parsed[0], parsed[1], header))
            section.values.update(values)
            section.where.update(where)
    for section in sections.values():
        _interpolate(section, defaults)
    return RawConfig(files=files, sections=sections)


def _section_type(head: str) -> tuple[str, str] | None:
    parts = [p.strip() for p in head.split("/")]
    if any(not p for p in parts):
        return None
    if len(parts) == 2 and parts[0] in SECTION_TYPES:
        return parts[0], parts[1]
    if len(parts) == 3 and parts[0] == "cluster":
        return "node", f"{parts[1]}/{parts[2]}"
    return None


def _parse_file(file: Path):
    """Yield (section header, values, key -> Location) for each section of ``file``.

    The empty key of the Location map is the header's own location.
    """
    from configobj import ConfigObj, ConfigObjError, DuplicateError

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigurationError(f"cannot read configuration file {file}: {_reason(err)}") from err
    lines = _rename_repeated_sections(file, text.splitlines())
    try:
        obj = ConfigObj(lines, interpolation=False, list_values=False, raise_errors=False,
                        write_empty_values=True)
        errors = []
    except ConfigObjError as err:
        obj, errors = err.config, err.errors
    fatal = [e for e in errors if not isinstance(e, DuplicateError)]
    if fatal:
        raise ConfigurationError(
            f"cannot parse configuration file {file}",
            [f"{file}:{e.line_number}: {_describe_bad_line(e.line)}" for e in fatal],
        )
    _warn_if_exposed(file, text)
    headers = _scan_headers(lines)
    key_lines = _index_keys(lines)
    later_lines = {}
    for dup in errors:
        later_lines.update(_apply_duplicate(file, dup, obj, headers, key_lines))
    for key in obj.scalars:
        log.warning("%s:%s: key '%s' is outside any section; ignored", file, key_lines.get((0, key)), key)
    for head in obj.sections:
        section = obj[head]
        start = headers.get(head, [0])[0]
        where = {"": Location(str(file), start or None)}
        values = {}
        for key in section.scalars:
            values[key] = section[key]
            line = later_lines.get((head, key)) or key_lines.get((start, key))
            where[key] = Location(str(file), line)
        for sub in section.sections:
            raise ConfigurationError(
                f"cannot parse configuration file {file}",
                [f"{file}: [[{sub}]] inside [{_real_name(head)}]: nested sections are not supported; "
                 "write [cluster/NAME/KIND] to override values for one kind of node"],
            )
        yield _real_name(head), values, where


#: marks a repeated section header (``//`` is in no valid section name)
_REPEATED = "//repeated-at-"


def _rename_repeated_sections(file: Path, lines: list[str]) -> list[str]:
    """Give each repetition of a ``[section]`` header a name of its own.

    configobj would put the keys after a repeated header into the section
    before it; renamed, they are merged back into the first one by
    ``read_config``, the later values winning (as ConfigParser did).
    """
    seen: dict[str, int] = {}
    out = list(lines)
    for number, text in enumerate(lines, 1):
        match = _HEADER.match(text)
        if not match or text.lstrip().startswith("[["):
            continue
        head = match.group(1)
        if head in seen:
            log.warning("%s:%s: section [%s] appears again (first at line %s); its keys are merged, "
                        "the later values winning", file, number, head, seen[head])
            out[number - 1] = f"[{head}{_REPEATED}{number}]"
        else:
            seen[head] = number
    return out


def _real_name(head: str) -> str:
    return head.split(_REPEATED)[0]


def _apply_duplicate(file: Path, dup, obj, headers, key_lines) -> dict:
    """Repeated key in one section: the later one wins (as ConfigParser).

    Returns {(section, key): line} for the keys whose later value was taken.
    """
    from configobj import ConfigObj

    line = dup.line.strip()
    head = _section_at(headers, dup.line_number)
    parsed = ConfigObj([line], interpolation=False, list_values=False)
    for key, value in parsed.items():
        target = obj[head] if head else obj
        first = key_lines.get((headers.get(head, [0])[0] if head else 0, key))
        log.warning("%s:%s: key '%s' appears again in [%s] (first at line %s); the later value is used",
                    file, dup.line_number, key, _real_name(head) if head else "", first)
        target[key] = value
    return {(head, key): dup.line_number for key in parsed}


def _scan_headers(lines: list[str]) -> dict[str, list[int]]:
    headers: dict[str, list[int]] = {}
    for number, text in enumerate(lines, 1):
        match = _HEADER.match(text)
        if match and not text.lstrip().startswith("[["):
            headers.setdefault(match.group(1), []).append(number)
    return headers


def _section_at(headers: dict[str, list[int]], line: int) -> str | None:
    best, best_line = None, 0
    for head, numbers in headers.items():
        for number in numbers:
            if best_line < number <= line:
                best, best_line = head, number
    return best


def _index_keys(lines: list[str]) -> dict[tuple[int, str], int]:
    """(line of the section header, 0 before any, key) -> the first line giving that key, in one
    pass over the file (looking each key up again made large files quadratic)."""
    index: dict[tuple[int, str], int] = {}
    header = 0
    for number, text in enumerate(lines, 1):
        if _HEADER.match(text) and not text.lstrip().startswith("[["):
            header = number
            continue
        match = _KEY.match(text)
        if match:
            index.setdefault((header, match.group(1)), number)
    return index


def _describe_bad_line(line: str) -> str:
    """Say what is wrong with a line without echoing a value (it may be a secret)."""
    match = _KEY.match(line)
    if match:
        return (f"the value of '{match.group(1)}' cannot be parsed "
                "(unbalanced quotes?); expected key = value")
    shown = line.strip()
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"cannot parse '{shown}'; expected [type/name] or key = value"


def _interpolate(section: Section, defaults: dict[str, str]) -> None:
    for key in list(section.values):
        try:
            section.values[key] = _expand(section, key, defaults, depth=0)
        except _InterpolationProblem as problem:
            section.problems.append(f"{section.locate(key)}: {problem}")


class _InterpolationProblem(Exception):
    pass


def _expand(section: Section, key: str, defaults: dict[str, str], depth: int) -> str:
    if depth > 10:
        raise _InterpolationProblem("%(...)s references loop; expected references that end")
    value = section.values.get(key, defaults.get(key))

    def percent(match):
        name = match.group(1)
        if name is None:
            return "%"
        if name not in section.values and name not in defaults:
            raise _InterpolationProblem(
                f"refers to %({name})s, but {section.title} and [DEFAULT] have no key '{name}'")
        return _expand(section, name, defaults, depth + 1)

    def env(match):
        name = match.group(1)
        if name not in os.environ:
            raise _InterpolationProblem(
                f"refers to environment variable {name}, which is not set; "
                f"expected `export {name}=...` before running elasticcluster")
        section.from_env.add(key)
        return os.environ[name]

    if "%" in value:
        value = _PERCENT.sub(percent, value)
    if "${" in value:
        value = _ENV.sub(env, value)
    return value


def _warn_if_exposed(file: Path, text: str) -> None:
    """Warn when a file that others can read writes a secret in clear."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
    keys = []
    for line in text.splitlines():
        match = _KEY.match(line)
        if match and SECRET_KEY_NAME.search(match.group(1)):
            value = line.split("=", 1)[1].strip()
            if value and not value.startswith("${") and "REPLACE" not in value:
                keys.append(match.group(1))
    if keys:
        log.warning("%s can be read by other users and holds secrets (%s); "
                    "run `chmod 600 %s` or move them to ${ENV_VAR} values",
                    file, ", ".join(sorted(set(keys))), file)


def _reason(err: Exception) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)
