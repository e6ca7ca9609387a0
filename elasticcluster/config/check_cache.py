"""Sections cerberus found valid, remembered between runs (the check cache).

Importing cerberus and having it check the schemas costs more than everything
else ``list-templates`` does with a configuration. A section that cerberus
found valid is kept in ``$XDG_CACHE_HOME/elasticcluster/checks-<digest>.json``
(mode 0600, one file per configuration path), under a salted SHA-256 digest of
what its result depends on: the section's values (after interpolation and the
environment fallbacks), the rules it was checked against, the home folder
(``~`` in paths) and the code that checked it (elasticcluster's version, the
``schema`` module and cerberus's ``validator`` module). A section whose digest
is found gets cerberus's values back without being validated again; any other
section (new, edited, invalid) is validated by cerberus, so a configuration
with a problem always gets cerberus's messages.

No secret is stored: a value cerberus returned as given is stored as "as
given" and taken from the section again, and a section whose secret (or
environment) value cerberus changed is not kept. Only the entries used by the
last run are kept. ``ELASTICCLUSTER_NO_CHECK_CACHE=1`` validates every section
afresh (``ELASTICCLUSTER_NO_CACHE`` is about the ``list-templates`` report).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = 1


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elasticcluster"


def _code_stamp() -> list:
    """What made the results: elasticcluster's version, its schema module, cerberus's validator."""
    import importlib.util

    from elasticcluster import __version__

    stamp: list = [__version__]
    files = [Path(__file__).with_name("schema.py")]
    spec = importlib.util.find_spec("cerberus")
    if spec is not None and spec.origin:
        files.append(Path(spec.origin).with_name("validator.py"))
    for file in files:
        try:
            stamp.append([str(file), os.stat(file).st_mtime_ns])
        except OSError:
            stamp.append([str(file), None])
    return stamp


def _plain(value) -> bool:
    """A value that comes back from JSON as it was (str, int, float, bool, a list of str)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    return type(value) is list and all(type(item) is str for item in value)


class CheckCache:
    """The sections of one configuration that cerberus found valid."""

    def __init__(self, config_path: Path):
        self.enabled = not os.environ.get("ELASTICCLUSTER_NO_CHECK_CACHE")
        digest = hashlib.sha256(str(Path(config_path).expanduser().resolve()).encode()).hexdigest()[:20]
        self.file = _cache_dir() / f"checks-{digest}.json"
        self.stamp = _code_stamp() if self.enabled else None
        self.salt = os.urandom(16).hex()  # a file read below brings its own
        self.stored: dict[str, list] = {}
        self.used: dict[str, list] = {}
        self.rule_texts: dict[int, tuple[dict, str]] = {}
        self.rules_texts: dict[tuple, str] = {}
        if self.enabled:
            try:
                with open(self.file, encoding="utf-8") as stream:
                    data = json.load(stream)
                if data.get("format") == FORMAT and data.get("stamp") == self.stamp:
                    self.salt, self.stored = str(data["salt"]), dict(data["entries"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass

    def _rule_text(self, rule: dict) -> str:
        # rules are module constants or kept per cloud family: each is made into text once
        entry = self.rule_texts.get(id(rule))
        if entry is None:
            entry = self.rule_texts[id(rule)] = (rule, json.dumps(rule, sort_keys=True, default=repr))
        return entry[1]

    def _rules_text(self, rules: dict) -> str:
        # sections of a type share their rules: the text of a set of rules is made once (each of
        # its rules is kept in rule_texts, so no id in the tuple is freed and reused)
        ident = tuple((name, id(rule)) for name, rule in rules.items())
        text = self.rules_texts.get(ident)
        if text is None:
            text = json.dumps(sorted((name, self._rule_text(rule)) for name, rule in rules.items()))
            self.rules_texts[ident] = text
        return text

    def _key(self, rules: dict, document: dict, secret: set[str]) -> str:
        text = json.dumps([os.path.expanduser("~"), self._rules_text(rules), sorted(document.items()),
                           sorted(secret)])
        return hashlib.sha256((self.salt + text).encode()).hexdigest()

    def get(self, rules: dict, document: dict, secret: set[str]) -> dict | None:
        """cerberus's values for this section when it found the very same one valid."""
        if not self.enabled:
            return None
        key = self._key(rules, document, secret)
        entry = self.stored.get(key)
        if entry is None:
            return None
        try:
            values = {item[0]: (document[item[0]] if len(item) == 1 else item[1]) for item in entry}
        except (KeyError, IndexError, TypeError):
            return None
        self.used[key] = entry
        return values

    def put(self, rules: dict, document: dict, secret: set[str], values: dict) -> None:
        """Remember that cerberus found this section valid, with these values."""
        if not self.enabled:
            return
        entry: list = []
        for name, value in values.items():
            if name in document and type(value) is type(document[name]) and value == document[name]:
                entry.append([name])  # as given (a secret is never written)
            elif name in secret or not _plain(value):
                return
            else:
                entry.append([name, value])
        self.used[self._key(rules, document, secret)] = entry

    def save(self) -> None:
        """Keep the entries of this run (when they are not what the file holds already)."""
        if not self.enabled or self.used == self.stored:
            return
        import tempfile

        data = {"format": FORMAT, "stamp": self.stamp, "salt": self.salt, "entries": self.used}
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".tmp-checks-")
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(data, stream)
            os.replace(tmp, self.file)
        except OSError:
            pass
