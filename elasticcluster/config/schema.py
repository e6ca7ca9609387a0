"""One cerberus schema per section type, plus one per cloud family.

``check_section`` validates a section's raw strings: it converts values to
their types, fills defaults, renames deprecated keys (with a warning), warns
about unknown keys and returns one message per problem, each naming the
file, line, section and key, what is wrong and what is expected.

cerberus validates every section; a section it found valid is remembered in
the check cache (``check_cache``) by a salted digest of its rules and values,
so that an unchanged valid section is not validated again and cerberus is
imported only when some section is new, changed or invalid.
"""
from __future__ import annotations

import difflib
import functools
import logging
import os
import re
from dataclasses import dataclass, field

from elasticcluster.config.reader import Section
from elasticcluster.limits import MAX_NODES
from elasticcluster.redact import SECRET_KEY_NAME

log = logging.getLogger("elasticcluster")

_TRUE = {"yes", "true", "on", "1", "y"}
_FALSE = {"no", "false", "off", "0", "n"}

KIND = r"[A-Za-z0-9][A-Za-z0-9_-]*"


@functools.cache
def _validator_class():
    """cerberus's Validator with the coercions config values need (cerberus is imported here,
    on first use: a configuration whose sections are all in the check cache never needs it)."""
    import cerberus

    class _Validator(cerberus.Validator):
        def _normalize_coerce_integer(self, value):
            return int(str(value).strip())

        def _normalize_coerce_number(self, value):
            return float(str(value).strip())

        def _normalize_coerce_boolean(self, value):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("not a yes/no value")

        def _normalize_coerce_path(self, value):
            return os.path.expanduser(str(value).strip())

        def _normalize_coerce_strip(self, value):
            return str(value).strip()

        def _normalize_coerce_list(self, value):
            if isinstance(value, list):
                return value
            return [item.strip() for item in str(value).split(",") if item.strip()]

    return _Validator


def _rule(kind: str, expect: str, **extra) -> dict:
    """A schema rule for a value of ``kind`` (string, integer, boolean, ...)."""
    base = {
        "string": {"type": "string", "coerce": "strip"},
        # scheme://[user@]host[:port][/path]: a port that is not a number is refused here, not at start
        "url": {"type": "string", "coerce": "strip",
                "regex": r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s/@]+@)?(?:\[[0-9A-Fa-f:.]+\]|[^\s/:@\[\]]+)"
                         r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]?\d{1,4}))?(?:[/?#]\S*)?"},
        "path": {"type": "string", "coerce": "path", "empty": False},
        "integer": {"type": "integer", "coerce": "integer"},
        "number": {"type": "float", "coerce": "number"},
        "boolean": {"type": "boolean", "coerce": "boolean"},
        "list": {"type": "list", "coerce": "list"},
        "any": {},
    }[kind]
    return {**base, **extra, "meta": {"expect": expect}}


_NAME = "a section name"
_NODE_KEYS = {
    "image_id": _rule("string", "the id (or name) of a machine image", empty=False),
    "flavor": _rule("string", "an instance type / flavor / size name", empty=False),
    "security_group": _rule("string", "a security group name"),
    "image_userdata": _rule("string", "a script run as root at first boot (may be empty)"),
    "network_ids": _rule("list", "a comma-separated list of network ids"),
    "login": _rule("string", "the name of a [login/NAME] section", empty=False),
    "image_user": _rule("string", "the user to log in as"),
    "boot_disk_type": _rule("string", "a disk type of the cloud"),
    "boot_disk_size": _rule("integer", "a size in GB", min=1),
    "accelerator_type": _rule("string", "an accelerator (GPU) type of the cloud"),
    "accelerator_count": _rule("integer", "a whole number, 0 or more", min=0),
    "location": _rule("string", "a location / availability zone of the cloud"),
    "availability_zone": _rule("string", "an availability zone of the cloud"),
    # ElastiCluster 1.3's Google keys (other families map them or refuse them, drivers/*.toml)
    "tags": _rule("list", "a comma-separated list of network tags"),
    "scheduling": _rule("string", "preemptible or standard", allowed=["preemptible", "standard"]),
    "allow_project_ssh_keys": _rule("boolean", "yes or no"),
    "min_cpu_platform": _rule("string", "a CPU platform name"),
}

#: how long an autoscaled node may stay idle before SLURM powers it down (its SuspendTime)
_AUTOSCALE_IDLE = _rule("integer", "a number of seconds, 30 or more", min=30)

FIXED = {
    "login": {
        "image_user": _rule("string", "the user the image lets you log in as", required=True, empty=False),
        "image_user_sudo": _rule("string", "the administrator's login name (usually root)", default="root"),
        "image_sudo": _rule("boolean", "yes or no", default=True),
        "user_key_name": _rule("string", "the name of the key pair on the cloud", required=True,
                               empty=False),
        "user_key_private": _rule("path", "the path of your SSH private key", required=True),
        "user_key_public": _rule("path", "the path of the matching .pub file", required=True),
        "ssh_proxy_command": _rule("string", "an ssh ProxyCommand"),
        "ssh_port": _rule("integer", "a TCP port number", min=1, max=65535, default=22),
    },
    "setup": {
        "provider": _rule("string", "ansible", allowed=["ansible"], default="ansible"),
        "playbook_path": _rule("path", "the path of an Ansible playbook"),
        "ssh_pipelining": _rule("boolean", "yes or no", default=True),
        # what `elasticcluster bake` keeps out of images: replaces playbooks/bake-secrets.txt
        "bake_secrets": _rule("path", "the path of a list of files to keep out of baked images"),
    },
    "cluster": {
        **_NODE_KEYS,
        "cloud": _rule("string", "the name of a [cloud/NAME] section", required=True, empty=False),
        "login": _rule("string", "the name of a [login/NAME] section", required=True, empty=False),
        "setup_provider": _rule("string", "the name of a [setup/NAME] section", required=True,
                                empty=False),
        "ssh_to": _rule("string", "a node kind of this cluster, e.g. frontend"),
        "startup_timeout": _rule("integer", "a number of seconds, 1 or more", min=1, default=600),
        "ssh_probe_timeout": _rule("integer", "a number of seconds, 1 or more", min=1, default=5),
        "thread_pool_max_size": _rule("integer", "a whole number, 1 or more", min=1, default=10),
        "autoscale_idle": _AUTOSCALE_IDLE,
        "bake_after_setup": _rule("boolean", "yes or no", default=False),
    },
    "node": {**_NODE_KEYS, "autoscale_idle": _AUTOSCALE_IDLE},
}

PATTERNS = {
    "setup": [
        (re.compile(rf"^({KIND})_groups$"), _rule("list", "a comma-separated list of Ansible groups")),
        (re.compile(r"^global_var_(\w+)$"), _rule("any", "a value")),
        (re.compile(rf"^({KIND})_var_(\w+)$"), _rule("any", "a value")),
        (re.compile(r"^ansible_\w+$"), _rule("string", "an Ansible setting")),
    ],
    "cluster": [
        (re.compile(rf"^({KIND})_min_nodes$"), _rule("integer", f"a whole number from 0 to {MAX_NODES}",
                                                       min=0, max=MAX_NODES)),
        # ElastiCluster 1.3's spelling (the one its documentation prefers)
        (re.compile(rf"^({KIND})_nodes_min$"), _rule("integer", f"a whole number from 0 to {MAX_NODES}",
                                                       min=0, max=MAX_NODES)),
        (re.compile(rf"^({KIND})_nodes$"), _rule("integer", f"a whole number from 0 to {MAX_NODES}",
                                                   min=0, max=MAX_NODES)),
        # the ceiling of an autoscaled kind (elasticcluster autoscale)
        (re.compile(rf"^({KIND})_nodes_max$"), _rule("integer", f"a whole number from 0 to {MAX_NODES}",
                                                       min=0, max=MAX_NODES)),
        (re.compile(r"^global_var_(\w+)$"), _rule("any", "a value")),
        (re.compile(r"^ex_\w+$"), _rule("string", "a value for the cloud driver's create_node")),
    ],
    "node": [
        (re.compile(r"^ex_\w+$"), _rule("string", "a value for the cloud driver's create_node")),
    ],
    "login": [],
}

RENAMED = {
    "cluster": {"setup": "setup_provider"},
    "node": {},
    "login": {},
    "setup": {},
}

OBSOLETE = {
    "cluster": {"frontend_class": "node kinds need no class; the kind is the prefix of KIND_nodes"},
}


@dataclass
class Checked:
    """A validated section: typed values, and what was wrong."""

    values: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@functools.cache
def cloud_schema(family) -> tuple[dict, dict[str, str], dict[str, str]]:
    """Schema, renamed keys and obsolete keys for a cloud family (made once per family)."""
    schema = {
        "provider": _rule("string", "a cloud provider name", required=True),
        "driver": _rule("string", "module:Class of a libcloud NodeDriver",
                        regex=r"[\w.]+:\w+"),
    }
    obsolete = {}
    for spec in family.keys.values():
        if spec.obsolete:
            obsolete[spec.name] = spec.obsolete
            continue
        extra = {}
        if spec.allowed:
            extra["allowed"] = list(spec.allowed)
        if spec.default is not None:
            extra["default"] = spec.default
        if spec.required:
            extra["required"] = True
        schema[spec.name] = _rule(spec.type, spec.describe or f"a {spec.type}", **extra)
    if "location" not in schema and not family.passthrough:
        schema["location"] = _LOCATION
    return schema, family.renamed(), obsolete


#: where nodes start, for every cloud whose driver's create_node takes a location
_LOCATION = _rule("string", "a location (region, zone) id or name of the cloud, where nodes start")


_ANY_STRING = _rule("string", "a value")
#: the rules cerberus has checked, by identity: id(rule) -> (rule, cerberus's expanded form of it).
#: Checking a schema (``DefinitionSchema``) costs far more than validating a section with it, and
#: cerberus checks it again on every ``validate`` unless the validator holds an
#: ``UnvalidatedSchema``: so each rule is checked once per process (rules are module constants or
#: cached per cloud family, and each entry keeps its rule, so no id is freed and reused) and
#: sections are validated against schemas assembled from checked rules.
_CHECKED: dict[int, tuple[dict, dict]] = {}


def _check_rules(rules: dict) -> None:
    """Have cerberus check (and expand) those of ``rules`` it has not checked yet, in one schema:
    a wrong rule raises cerberus's SchemaError here, as making a validator with it would."""
    new = {name: rule for name, rule in rules.items() if id(rule) not in _CHECKED}
    if new:
        from cerberus.schema import DefinitionSchema

        checked = DefinitionSchema(_section_validator(), new)
        for name, rule in new.items():
            _CHECKED[id(rule)] = (rule, checked[name])


@functools.cache
def _section_validator():
    """The one validator of every section: its schema is set before each use."""
    return _validator_class()()


def _validate(document: dict, full: dict, schema: dict, patterns, passthrough: bool):
    """cerberus's result for ``document``: (values, {key: (errors, rule)})."""
    from cerberus.schema import UnvalidatedSchema

    # the section type's pattern rules are checked with its fixed ones, the first time it is seen
    _check_rules({**schema, **{f"~{i}": rule for i, (_, rule) in enumerate(patterns)},
                  **({"~": _ANY_STRING} if passthrough else {})})
    _check_rules(full)
    validator = _section_validator()
    validator.schema = UnvalidatedSchema({key: _CHECKED[id(rule)][1] for key, rule in full.items()})
    validator.validate(document)
    values = dict(validator.document)
    tree = validator.document_error_tree
    return values, {key: (node.errors, full[key]) for key, node in tree.descendants.items()}


def check_section(section: Section, schema: dict, patterns=(), renamed=None, obsolete=None,
                  is_secret=lambda key: False, passthrough: bool = False,
                  env_fallback: dict[str, tuple[str, ...]] | None = None, cache=None) -> Checked:
    """Validate ``section`` against ``schema`` (+ keys matching ``patterns``); ``cache``: a
    ``check_cache.CheckCache`` that remembers the sections found valid."""
    checked = Checked(problems=list(section.problems))
    document = dict(section.values)
    for old, new in (renamed or {}).items():
        if old in document:
            log.warning("%s: key '%s' is deprecated; write '%s' instead",
                        section.locate(old), old, new)
            if new in document:
                log.warning("%s: both '%s' and '%s' are given; '%s' is used",
                            section.locate(old), old, new, new)
                document.pop(old)
            else:
                document[new] = document.pop(old)
                section.where[new] = section.where.get(old, section.header)
    for key, why in (obsolete or {}).items():
        if key in document:
            document.pop(key)
            log.warning("%s: key '%s' is no longer used (%s); ignored", section.locate(key), key, why)
    for key, names in (env_fallback or {}).items():
        if key not in document:
            for name in names:
                if os.environ.get(name):
                    document[key] = os.environ[name]
                    section.from_env.add(key)
                    break
    full = dict(schema)
    for key in document:
        if key in full:
            continue
        for pattern, rule in patterns:
            if pattern.match(key):
                full[key] = rule
                break
        else:
            if passthrough:
                full[key] = _ANY_STRING
    for key in [k for k in document if k not in full]:
        document.pop(key)
        hint = difflib.get_close_matches(key, list(schema), n=1)
        log.warning("%s: unknown key '%s' ignored%s", section.locate(key), key,
                    f" (did you mean '{hint[0]}'?)" if hint else "")
    # one validation of the whole section, the fixed keys and the pattern keys together, unless
    # cerberus found this very section valid before (the check cache)
    secret = {key for key in document
              if is_secret(key) or key in section.from_env or SECRET_KEY_NAME.search(key)}
    values = cache.get(full, document, secret) if cache is not None else None
    errors: dict = {}
    if values is None:
        values, errors = _validate(document, full, schema, patterns, passthrough)
        if not errors and not checked.problems and cache is not None:
            cache.put(full, document, secret, values)
    checked.values = values
    for key in sorted(errors):
        checked.problems.append(_message(section, key, *errors[key], document.get(key), is_secret(key),
                                         env_fallback))
    return checked


def _message(section: Section, key: str, errors, rule: dict, value, secret: bool,
             env_fallback) -> str:
    expect = rule.get("meta", {}).get("expect", "a valid value")
    codes = {error.code: error for error in errors}
    if 0x02 in codes:
        names = (env_fallback or {}).get(key)
        also = f" (or set {' or '.join(names)})" if names else ""
        return f"{section.locate()}: required key '{key}' is missing; expected {expect}{also}"
    if 0x61 in codes or 0x24 in codes:
        what = "cannot be read"
    elif 0x42 in codes:
        what = f"is below the minimum {codes[0x42].constraint}"
    elif 0x43 in codes:
        what = f"is above the maximum {codes[0x43].constraint}"
    elif 0x44 in codes:
        what = "is not one of " + ", ".join(map(str, codes[0x44].constraint))
    elif 0x41 in codes:
        what = "does not have the expected form"
    elif 0x22 in codes:
        what = "is empty"
    else:
        what = "is not valid"
    shown = "***" if secret or key in section.from_env else repr(value)
    return f"{section.locate(key)} = {shown} {what}; expected {expect}"
