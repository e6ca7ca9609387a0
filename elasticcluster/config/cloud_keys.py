"""The keys that depend on the cloud's driver, checked against what the driver takes.

A pass-through cloud section (a provider with no ``drivers/*.toml``) holds
its driver's constructor arguments: each key is checked against the
constructor's parameters (unknown, missing, typed), where the user sees it.
Cluster and node sections may set any ``create_node`` argument that
elasticcluster does not fill itself, by a key of the same name, typed by the
driver's signature; the keys of ElastiCluster 1.3 (``boot_disk_size``,
``tags``...) must be mapped by the family's file or are refused with the
reason; a required argument that nothing sets, and a driver that cannot get
the SSH key onto its nodes, are refused before anything starts.

What a driver takes comes from ``driver_info`` (kept on disk, so that this
check imports libcloud only when a driver is seen for the first time).
"""
from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from functools import cache

from elasticcluster import create_args, driver_info
from elasticcluster.cloud_catalog import CloudFamily
from elasticcluster.config import schema
from elasticcluster.config.reader import Section
from elasticcluster.exceptions import ConfigurationError

log = logging.getLogger("elasticcluster")

#: keys of cluster and node sections that only the family's file can map to the driver
#: (location goes to the driver's location argument when it has one)
FAMILY_KEYS = ("boot_disk_type", "boot_disk_size", "accelerator_type", "accelerator_count",
               "scheduling", "tags", "allow_project_ssh_keys", "min_cpu_platform", "availability_zone")
LOCATION_KEYS = ("location",)


@dataclass
class CloudDriver:
    """A cloud section's driver: what it takes and the create plan, or why there is none."""

    info: driver_info.DriverInfo | None = None
    plan: create_args.CreatePlan | None = None
    problems: list[str] = field(default_factory=list)
    #: those of ``problems`` that keep the driver from being built (the others only keep new
    #: nodes from being started: clusters already started on this cloud can still be stopped)
    build_problems: list[str] = field(default_factory=list)


def _constructor_guess(family: CloudFamily, values: dict) -> dict:
    """The constructor arguments a section gives (enough to pick the driver's class)."""
    if family.passthrough:
        return {k: v for k, v in values.items() if k not in ("provider", "driver", "location")}
    args = dict(family.constructor)
    for spec in family.keys.values():
        value = values.get(spec.name)
        if spec.arg and not spec.arg.startswith("@") and not spec.unlisted and value not in (None, ""):
            args[spec.arg] = spec.values.get(str(value), value)
    return args


def cloud_driver(section: Section, family: CloudFamily, values: dict) -> CloudDriver:
    """What the driver of a checked cloud section takes; problems name file, line and key."""
    provider = values.get("provider", "")
    found = CloudDriver()
    args = _constructor_guess(family, values)

    def load_class():  # only for a driver not read before (elasticcluster.cloud needs libcloud's names)
        from elasticcluster.cloud import driver_class

        return driver_class(provider, family)

    try:
        info = driver_info.driver_for(provider, family.driver, args, load_class)
    except ConfigurationError as err:
        key = "driver" if "driver" in section.values else "provider"
        found.problems.append(f"{section.locate(key)} {str(err).removeprefix(key + ' ')}"
                              if str(err).startswith(key + " ") else f"{section.locate(key)}: {err}")
        found.build_problems = list(found.problems)
        return found
    found.info = info
    found.plan = create_args.plan(family, info)
    if family.passthrough:
        found.problems += _check_constructor(section, info, values)
    if info.refused and not found.problems:
        key, _, why = info.refused.partition(": ")
        where = section.locate(key) if key in values else section.locate()
        found.problems.append(f"{where}: {info.name} refuses it ({why or info.refused}); {info.init_text()}"
                              + _location_hint(key, found.plan))
    found.build_problems = list(found.problems)
    if found.plan.delivery is None:
        found.problems.append(f"{section.locate('provider')} = {provider}: {found.plan.refusal()}")
    if values.get("location") and "location" not in family.keys and not found.plan.location_arg:
        found.problems.append(f"{section.locate('location')}: {info.name}.create_node takes no location; "
                              "remove it (the constructor's region or endpoint says where nodes go)")
    return found


def _location_hint(key: str, plan: create_args.CreatePlan) -> str:
    if key in ("region", "zone", "datacenter", "location") and plan.location_arg:
        return "; to choose where nodes start, write location = ID or name"
    return ""


def _check_constructor(section: Section, info: driver_info.DriverInfo, values: dict) -> list[str]:
    """Pass-through: every key of the section is a constructor argument (typed, required)."""
    from elasticcluster.cloud import passthrough_keys

    problems = []
    params = info.init
    given = passthrough_keys(values, params)
    plan_location = "location"
    for key in sorted(given):
        if key in params:
            try:
                values[key] = driver_info.convert(params[key], values[key])
            except ValueError:
                shown = "***" if params[key].secret else repr(values[key])
                problems.append(f"{section.locate(key)} = {shown} cannot be read; expected "
                                f"{params[key].expect()} ({info.name} takes {key})")
            continue
        close = difflib.get_close_matches(key, list(params), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if key in ("region", "zone", "datacenter"):
            hint += f"; to choose where nodes start, write {plan_location} = ID or name"
        problems.append(f"{section.locate(key)}: unknown key '{key}' for provider "
                        f"{values.get('provider')}{hint}; {info.init_text()}")
    missing = [name for name, p in params.items() if p.required and name not in given]
    for name in missing:
        problems.append(f"{section.locate()}: required key '{name}' is missing; {info.init_text()}")
    if not given and not missing:
        problems.append(f"{section.locate()}: no settings for provider {values.get('provider')} "
                        f"(credentials or endpoint); {info.init_text()}")
    return problems


# -- cluster and node sections ----------------------------------------------------------------


@cache
def _rule(kind: str | None, expect: str) -> dict:
    base = {"integer": "integer", "number": "number", "boolean": "boolean", "list": "list"}.get(kind or "",
                                                                                              "string")
    return schema._rule(base, expect)


@cache
def _exact(name: str):
    return re.compile(rf"^{re.escape(name)}$")


#: keys of cluster and node sections that are elasticcluster's own, whatever the driver calls
#: its arguments (Gandi's create_node takes a `login`, which is not the [login/NAME] section)
OWN_KEYS = frozenset(schema.FIXED["cluster"]) | frozenset(schema.FIXED["node"])


def settable(plan: create_args.CreatePlan) -> dict:
    """The create_node arguments a key of the same name in a cluster section may set."""
    return {name: p for name, p in plan.free().items() if name not in OWN_KEYS}


def create_patterns(plan: create_args.CreatePlan | None) -> list:
    """Schema patterns for the create_node arguments a cluster section may set by name."""
    if plan is None:
        return []
    return [(_exact(name), _rule(p.type, f"{p.expect()} for {plan.info.name}.create_node"))
            for name, p in settable(plan).items()]


@dataclass
class CreateKeys:
    """The create_node arguments one node kind sets by name (typed), and the secret ones."""

    values: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)


def create_keys(plan: create_args.CreatePlan, node: dict, where: dict[str, Section],
                problems: list[str]) -> CreateKeys:
    """The keys of a kind's merged values ``node`` that set create_node arguments; ``where``
    names the section each key came from (for messages)."""
    found = CreateKeys()
    free = settable(plan)
    info = plan.info
    for key in sorted(node):
        section = where.get(key)
        if section is None or key in OWN_KEYS:
            continue
        if key in free:
            value = node[key]
            try:
                if not isinstance(value, (int, float, bool, list)):
                    value = driver_info.convert(free[key], value)
            except ValueError:
                problems.append(f"{section.locate(key)} cannot be read; expected {free[key].expect()}")
                continue
            if free[key].secret:
                found.secrets[key] = value
            else:
                found.values[key] = value
        elif key in plan.reserved and key in info.create:
            problems.append(f"{section.locate(key)}: {info.name}.create_node's {key} is set by "
                            f"{plan.reserved[key]}; remove it")
        elif key.startswith("ex_"):
            if info.create_kwargs:
                found.values[key] = driver_info.parse_scalar(node[key])
            else:
                close = difflib.get_close_matches(key, list(free), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"{section.locate(key)}: not a parameter of {info.name}.create_node{hint}; "
                                f"{info.create_text(skip=plan.reserved)}")
    return found


def check_kind(plan: create_args.CreatePlan, provider: str, cloud: Section, node: dict,
               where: dict[str, Section], kind: str, title: str, given: set[str],
               problems: list[str], warned: set[str]) -> None:
    """The keys of one node kind that only some drivers take; and what the driver requires."""
    info = plan.info
    family = plan.family
    for key in FAMILY_KEYS:
        if node.get(key) in (None, "") or key not in where:
            continue
        spec = family.node_keys.get(key)
        section = where[key]
        if spec is None:
            mapped = f"drivers/{family.name}.toml maps no {key}" if not family.passthrough else \
                f"provider {provider} has no mapping file saying what {key} becomes"
            problems.append(f"{section.locate(key)}: not used on provider {provider} ({mapped}); remove it, "
                            f"or set the driver's own argument ({info.create_text(skip=plan.reserved)})")
        elif isinstance(spec, dict) and spec.get("refused"):
            problems.append(f"{section.locate(key)}: not used on provider {provider}: {spec['refused']}")
    if node.get("location") and "location" in where and not plan.location_arg:
        problems.append(f"{where['location'].locate('location')}: not used on provider {provider}: "
                        f"{info.name}.create_node takes no location")
    if node.get("image_userdata") and "userdata" not in plan.purposes and "image_userdata" in where:
        problems.append(f"{where['image_userdata'].locate('image_userdata')}: {info.name}.create_node "
                        "takes no user data; remove it (or run the script from the setup playbook)")
    if node.get("network_ids") and "network_ids" not in plan.purposes and "network_ids" in where:
        problems.append(f"{where['network_ids'].locate('network_ids')}: {info.name}.create_node takes no "
                        f"networks; remove it ({info.create_text(skip=plan.reserved)})")
    group = node.get("security_group")
    # "default" (ElastiCluster 1.3's default value) asks for nothing more than no group does
    if group and group != "default" and "security_groups" not in plan.purposes and "security_group" in where:
        # ElastiCluster 1.3 configs carry one for every cloud (it was ignored on Google's): said, once
        message = (f"{where['security_group'].locate('security_group')} = {group}: {info.name} takes no "
                   "security group; ignored (open ports with the cloud's own firewall rules)")
        if message not in warned:
            warned.add(message)
            log.warning("%s", message)
    missing = plan.missing(given)
    if missing:
        problems.append(f"{where.get('@cluster').locate()}: {info.name}.create_node needs "
                        f"{', '.join(missing)}, which nothing sets for the {kind} nodes; add "
                        + " and ".join(f"{name} = ..." for name in missing)
                        + f" to {title} or [{title[1:-1]}/{kind}]")
    location = plan.location_arg and info.create.get(plan.location_arg)
    if location and location.required and not (node.get("location") or node.get("availability_zone")):
        spec = family.keys.get("location")
        if not (spec is None or not spec.arg) or not cloud_location(cloud):
            problems.append(f"{where.get('@cluster').locate()}: {info.name}.create_node needs a location "
                            f"for the {kind} nodes; add location = ID or name to {cloud.title} (or to "
                            f"{title} or [{title[1:-1]}/{kind}])")


def cloud_location(cloud: Section) -> str | None:
    return (cloud.values.get("location") or "").strip() or None
