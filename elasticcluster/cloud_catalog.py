"""The cloud families elasticcluster knows, read from the mapping files in ``drivers/``.

Each ``drivers/<family>.toml`` names the ``provider`` values it answers to, the
libcloud driver to use (``libcloud = "ec2"``, or ``driver = "module:Class"`` for
one libcloud does not ship) and, per config key: its type, whether it is
required or secret, environment variables that may supply it, the driver
argument it becomes (``arg``), deprecated names and obsolete keys.

A ``provider`` with no mapping file is looked up in libcloud's own list of
compute providers; its keys then go to the driver as they are.
``drivers/_conventions.toml`` holds what libcloud's drivers call the
``create_node`` arguments we fill (key pair, user data, tags...), for every
family whose own file does not say.

What the files hold is kept in ``$XDG_CACHE_HOME/elasticcluster/mappings.json``
by each file's path, size and mtime, so that loading a configuration does not
import and run the TOML parser (a tenth of a cold ``list-templates``) while
the files are unchanged; ``ELASTICCLUSTER_NO_DRIVER_CACHE=1`` parses them
afresh.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from elasticcluster.redact import SECRET_KEY_NAME
from elasticcluster.resources import bundled_dir

#: keys of a cloud section that every provider accepts
COMMON_KEYS = ("provider", "driver")



@dataclass(frozen=True)
class KeySpec:
    name: str
    type: str = "string"
    required: bool = False
    secret: bool = False
    default: object = None
    env: tuple[str, ...] = ()
    arg: str | None = None
    allowed: tuple[str, ...] = ()
    values: dict = field(default_factory=dict, hash=False)
    #: for a URL: a trailing path (``/v3``) that is cut off and sets other constructor arguments
    url_suffixes: dict = field(default_factory=dict, hash=False)
    #: ``{list = "classmethod", attribute = "name"}``: a value the driver class does not list
    #: is set as that attribute of the driver after construction instead of passed as ``arg``
    unlisted: dict = field(default_factory=dict, hash=False)
    deprecated: tuple[str, ...] = ()
    obsolete: str | None = None
    describe: str = ""
    #: the ``create_node`` argument the value becomes for every node (a name, or a table as
    #: in ``[node_keys]``), instead of a constructor argument
    create: object = field(default=None, hash=False)


@dataclass(frozen=True)
class CloudFamily:
    """What one ``drivers/*.toml`` file says (or a pass-through libcloud provider)."""

    name: str
    names: tuple[str, ...]
    libcloud: str | None = None
    driver: str | None = None
    describe: str = ""
    keys: dict[str, KeySpec] = field(default_factory=dict, hash=False)
    passthrough: bool = False
    #: constant arguments of the driver's constructor
    constructor: dict = field(default_factory=dict, hash=False)
    #: our create parameters (key_name, userdata, tags, ...) -> the driver's ``create_node`` argument
    create: dict = field(default_factory=dict, hash=False)
    #: where a libcloud Node's ``extra`` keeps tags, client token, ...
    node_fields: dict = field(default_factory=dict, hash=False)
    #: driver methods that list, create and open security groups (absent: not managed)
    security_group: dict = field(default_factory=dict, hash=False)
    #: driver methods that allocate, attach and release floating IPs
    floating_ip: dict = field(default_factory=dict, hash=False)
    #: how ``list_nodes`` narrows to one cluster (filter) and looks instances up by id (by_ids)
    listing: dict = field(default_factory=dict, hash=False)
    #: cluster and node keys (boot_disk_size, tags, ...) -> the ``create_node`` argument each
    #: becomes, or ``{refused = "why"}``; a key a family does not list is refused
    node_keys: dict = field(default_factory=dict, hash=False)
    #: baked images: ``create`` (more create_image arguments), ``tag`` (the call that tags an
    #: image), ``snapshots`` (where in an image's extra its snapshot ids are) and
    #: ``delete_snapshot`` (the call that deletes one, after the image)
    images: dict = field(default_factory=dict, hash=False)

    def renamed(self) -> dict[str, str]:
        """Deprecated key name -> current name."""
        return {old: spec.name for spec in self.keys.values() for old in spec.deprecated}

    def is_secret(self, key: str) -> bool:
        spec = self.keys.get(key)
        if spec is not None:
            return spec.secret
        return bool(SECRET_KEY_NAME.search(key))


@cache
def _parsed_store() -> dict:
    """The files parsed before: path -> {"stamp": [size, mtime], "data": ...}."""
    if os.environ.get("ELASTICCLUSTER_NO_DRIVER_CACHE"):
        return {}
    try:
        with open(_parsed_path(), encoding="utf-8") as stream:
            data = json.load(stream)
        return dict(data["files"]) if data.get("format") == 1 else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _parsed_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "elasticcluster" / "mappings.json"


def _read_toml(path) -> dict:
    """What the mapping file ``path`` holds: kept from an earlier run while it is unchanged."""
    st = os.stat(path)
    stamp = [st.st_size, st.st_mtime_ns]
    store = _parsed_store()
    entry = store.get(str(path))
    if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("data"), dict):
        return entry["data"]
    import tomllib

    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    try:
        plain = json.loads(json.dumps(data)) == data  # (a TOML date would not come back)
    except (TypeError, ValueError):
        plain = False
    if plain and not os.environ.get("ELASTICCLUSTER_NO_DRIVER_CACHE"):
        store[str(path)] = {"stamp": stamp, "data": data}
        _save_parsed(store)
    return data


def _save_parsed(store: dict) -> None:
    import tempfile

    target = _parsed_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-mappings-")
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump({"format": 1, "files": store}, stream)
        os.replace(tmp, target)
    except OSError:
        pass


def _load_family(path) -> CloudFamily:
    data = _read_toml(path)
    head = data.get("provider", {})
    keys = {}
    for name, spec in data.get("keys", {}).items():
        keys[name] = KeySpec(
            name=name,
            type=spec.get("type", "string"),
            required=spec.get("required", False),
            secret=spec.get("secret", False),
            default=spec.get("default"),
            env=tuple(spec.get("env", ())),
            arg=spec.get("arg"),
            allowed=tuple(spec.get("allowed", ())),
            values=dict(spec.get("values", {})),
            url_suffixes=dict(spec.get("url_suffixes", {})),
            unlisted=dict(spec.get("unlisted", {})),
            deprecated=tuple(spec.get("deprecated", ())),
            obsolete=spec.get("obsolete"),
            describe=spec.get("describe", ""),
            create=spec.get("create"),
        )
    return CloudFamily(
        name=path.stem,
        names=tuple(head["names"]),
        libcloud=head.get("libcloud"),
        driver=head.get("driver"),
        describe=head.get("describe", ""),
        keys=keys,
        constructor=dict(data.get("constructor", {})),
        create=dict(data.get("create", {})),
        node_fields=dict(data.get("nodes", {})),
        security_group=dict(data.get("security_group", {})),
        floating_ip=dict(data.get("floating_ip", {})),
        listing=dict(data.get("listing", {})),
        node_keys=dict(data.get("node_keys", {})),
        images=dict(data.get("images", {})),
    )


@cache
def mapped_families() -> dict[str, CloudFamily]:
    """provider name -> family, for every mapping file in ``drivers/``."""
    by_name: dict[str, CloudFamily] = {}
    for path in sorted(bundled_dir("drivers").glob("*.toml")):
        if path.name.startswith("_"):
            continue
        family = _load_family(path)
        for name in family.names:
            by_name[name] = family
    return by_name


@cache
def conventions() -> dict:
    """``drivers/_conventions.toml``: libcloud's usual names of the arguments we fill."""
    return _read_toml(bundled_dir("drivers") / "_conventions.toml")


@cache
def libcloud_providers() -> frozenset[str]:
    """The compute provider names of the installed libcloud (imports libcloud)."""
    from libcloud.compute.providers import DRIVERS

    return frozenset(str(name) for name in DRIVERS)


def family_for(provider: str, driver: str | None = None) -> CloudFamily | None:
    """The family of ``provider``, or None when neither we nor libcloud know it.

    ``driver = module:Class`` in the cloud section registers that class with
    libcloud at run time: for a mapped provider it replaces the family's
    driver (keys are mapped as usual), for any other name it makes a
    pass-through family.
    """
    families = mapped_families()
    if provider in families:
        family = families[provider]
        return replace(family, driver=driver, libcloud=None) if driver else family
    if driver:
        return CloudFamily(name=provider, names=(provider,), driver=driver, passthrough=True)
    if provider in libcloud_providers():
        return CloudFamily(name=provider, names=(provider,), libcloud=provider, passthrough=True)
    return None


def known_provider_names() -> list[str]:
    return sorted(set(mapped_families()) | libcloud_providers())


def close_provider_names(provider: str) -> list[str]:
    return difflib.get_close_matches(provider, known_provider_names(), n=3, cutoff=0.6)
