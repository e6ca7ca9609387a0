"""Helpers for the configuration tests: edit config text, find lines, run list-templates."""
from __future__ import annotations

import json
import re

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*$")


def _section_bounds(lines: list[str], section: str) -> tuple[int, int]:
    """(index of the header line, index just past the section's last line)."""
    start = None
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and start is not None:
            return start, index
        if match and match.group(1).strip() == section:
            start = index
    if start is None:
        raise KeyError(f"no [{section}] in the config text")
    return start, len(lines)


def _key_index(lines: list[str], start: int, end: int, key: str) -> int | None:
    for index in range(start + 1, end):
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[index]):
            return index
    return None


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` in ``[section]`` (replacing the key or adding it)."""
    lines = text.splitlines()
    start, end = _section_bounds(lines, section)
    index = _key_index(lines, start, end, key)
    if index is None:
        lines.insert(start + 1, f"{key} = {value}")
    else:
        lines[index] = f"{key} = {value}"
    return "\n".join(lines) + "\n"


def drop_key(text: str, section: str, key: str) -> str:
    """``text`` without ``key`` in ``[section]`` (the key must be there)."""
    lines = text.splitlines()
    start, end = _section_bounds(lines, section)
    index = _key_index(lines, start, end, key)
    if index is None:
        raise KeyError(f"no {key} in [{section}]")
    del lines[index]
    return "\n".join(lines) + "\n"


def header_line(text: str, section: str) -> int:
    """1-based line number of ``[section]`` in ``text``."""
    return _section_bounds(text.splitlines(), section)[0] + 1


def key_line(text: str, section: str, key: str) -> int:
    """1-based line number of ``key`` in ``[section]`` of ``text``."""
    lines = text.splitlines()
    start, end = _section_bounds(lines, section)
    index = _key_index(lines, start, end, key)
    if index is None:
        raise KeyError(f"no {key} in [{section}]")
    return index + 1


def cluster_names(text: str) -> set[str]:
    """The NAME of every ``[cluster/NAME]`` header (not the per-kind ones)."""
    names = set()
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            parts = [p.strip() for p in match.group(1).split("/")]
            if len(parts) == 2 and parts[0] == "cluster":
                names.add(parts[1])
    return names


def no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert "unexpected error" not in result.output, result.output


def list_json(cli, config, *args, env=None):
    """Run ``-c CONFIG list-templates --json``; return (result, parsed JSON)."""
    result = cli("-c", str(config), "list-templates", "--json", *args, env=env)
    no_traceback(result)
    assert result.returncode in (0, 2), result.output
    data = json.loads(result.stdout)
    return result, data


def listed(data: dict) -> dict[str, dict]:
    """name -> summary of the valid templates of a ``list-templates --json`` output."""
    return {t["name"]: t for t in data["templates"]}


def skipped(data: dict) -> dict[str, list[str]]:
    """name -> problems of the skipped templates of a ``list-templates --json`` output."""
    return {s["name"]: s["problems"] for s in data["skipped"]}


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING:")]
