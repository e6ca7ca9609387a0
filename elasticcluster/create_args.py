"""Which ``create_node`` argument carries what, for one cloud family and driver.

One plan serves the configuration check (``list-templates`` says what is
wrong before anything starts) and the node lifecycle (``cloud.py`` fills the
arguments): how the SSH key reaches a node, which arguments carry the user
data, our tags, security groups, networks and the client token, which ones
start the node, what the family's node keys (``boot_disk_size``...) become,
and which arguments are left to keys of the same name in cluster sections.
The names come from the family's mapping file, else from libcloud's
conventions (``drivers/_conventions.toml``); the driver's own signature
(``driver_info``) says which of them exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from elasticcluster.cloud_catalog import CloudFamily, conventions
from elasticcluster.driver_info import DriverInfo, Param

#: what elasticcluster fills besides the SSH key, in the order of the mapping files' [create]
PURPOSES = ("userdata", "security_groups", "tags", "client_token", "network_ids")
#: ways the SSH key reaches a node (see drivers/_conventions.toml)
WAYS = ("auth", "key_name", "key_ids", "public_keys", "user_data", "login_key", "account")

_WAY_TEXT = {
    "auth": "auth=NodeAuthSSHKey (the driver puts the key on the node)",
    "key_name": "key pair {arg} (imported under user_key_name)",
    "key_ids": "key pair ids {arg} (imported under user_key_name)",
    "public_keys": "public key in {arg}",
    "user_data": "cloud-init ssh_authorized_keys in {arg}",
    "login_key": "USER:KEY in {arg}",
    "account": "the key of your cloud account (the image puts it on the node)",
}


@dataclass(frozen=True)
class Delivery:
    """How the login's SSH key reaches a node."""

    way: str
    arg: str | None = None

    def describe(self) -> str:
        return _WAY_TEXT[self.way].format(arg=self.arg)


@dataclass
class CreatePlan:
    """The ``create_node`` arguments of one driver, by what fills them."""

    family: CloudFamily
    info: DriverInfo
    delivery: Delivery | None
    #: purpose -> (argument, options), for the purposes this driver can take
    purposes: dict[str, tuple[str, dict]] = field(default_factory=dict)
    #: arguments that start the node on creation, and their value
    start: dict[str, object] = field(default_factory=dict)
    #: the argument a location goes to (None: this driver takes none), and whether it is a
    #: NodeLocation found through list_locations (else the name itself)
    location_arg: str | None = None
    location_object: bool = False
    #: create_node argument -> what fills it (for messages)
    reserved: dict[str, str] = field(default_factory=dict)

    def takes(self, arg: str) -> bool:
        return arg.partition(".")[0] in self.info.create or self.info.create_kwargs

    def free(self) -> dict[str, Param]:
        """The arguments a key of the same name in a cluster section may set."""
        return {name: p for name, p in self.info.create.items() if name not in self.reserved}

    def missing(self, given) -> list[str]:
        """Required arguments that nothing fills and ``given`` does not name."""
        return [name for name, p in self.info.create.items()
                if p.required and name not in self.reserved and name not in given]

    def refusal(self) -> str:
        """Why the SSH key cannot reach this driver's nodes (for messages)."""
        return (f"{self.info.name}.create_node has no way to put an SSH key on a node (no `auth` "
                "taking an SSH key, no key-pair, public-key or user-data argument), so elasticcluster "
                "could never log in to its nodes")


def plan(family: CloudFamily, info: DriverInfo) -> CreatePlan:
    """The create plan of ``family`` on the driver ``info`` describes."""
    result = CreatePlan(family, info, None)
    created = info.create
    for name in ("name", "size", "image"):
        if name in created:
            result.reserved[name] = "elasticcluster (instance name, flavor, image_id)"
    common = conventions()
    for purpose in PURPOSES:
        spec = family.create.get(purpose)
        if spec is None:
            arg = next((a for a in common["create"].get(purpose, ()) if a in created), None)
            spec = arg
        if not spec:
            continue
        arg, options = (spec, {}) if isinstance(spec, str) else (spec["arg"], dict(spec))
        if result.takes(arg):
            result.purposes[purpose] = (arg, options)
            result.reserved.setdefault(arg.partition(".")[0], f"elasticcluster ({purpose})")
    result.delivery = _delivery(family, info, result)
    if result.delivery is not None and result.delivery.arg:
        result.reserved.setdefault(result.delivery.arg.partition(".")[0], "elasticcluster (the SSH key)")
        if result.delivery.way == "user_data":
            result.purposes["userdata"] = (result.delivery.arg, {})
    if result.delivery is not None and result.delivery.way == "auth":
        result.reserved["auth"] = "elasticcluster (the SSH key)"
    for arg, value in {**common.get("start", {}), **family.create.get("start", {})}.items():
        if arg in created:  # a default: a key of the same name in a cluster section may say otherwise
            result.start[arg] = value
    location = family.node_keys.get("location")
    if location is not None:
        arg = location if isinstance(location, str) else location.get("arg")
        if arg and result.takes(arg):
            result.location_arg = arg
            result.location_object = arg == "location"
    elif "location" in created:
        result.location_arg, result.location_object = "location", True
    if result.location_arg:
        result.reserved[result.location_arg] = "the location key"
    for key, spec in family.node_keys.items():
        if isinstance(spec, dict) and spec.get("arg"):
            result.reserved.setdefault(spec["arg"].partition(".")[0], f"the {key} key")
            for also in spec.get("also", {}):
                result.reserved.setdefault(also, f"the {key} key")
        elif isinstance(spec, str):
            result.reserved.setdefault(spec.partition(".")[0], f"the {key} key")
    for spec in family.keys.values():
        if spec.create:
            arg = spec.create if isinstance(spec.create, str) else spec.create.get("arg")
            if arg:
                result.reserved.setdefault(arg.partition(".")[0], f"the {spec.name} key of the cloud section")
    return result


def _delivery(family: CloudFamily, info: DriverInfo, result: CreatePlan) -> Delivery | None:
    """The way of the family's file, else the first of libcloud's conventions the driver offers."""
    created = info.create
    chosen = family.create.get("ssh_key")
    for way in ("key_name", "key_ids", "login_key", "public_keys", "user_data"):
        if way in family.create:
            arg = family.create[way]
            arg = arg if isinstance(arg, str) else arg["arg"]
            return Delivery(way, arg) if result.takes(arg) else None
    if chosen == "account":
        return Delivery("account")
    common = conventions()["ssh_key"]
    order = [chosen] if chosen else common["order"]
    for way in order:
        if way == "auth":
            if "auth" in created and "ssh_key" in info.features:
                return Delivery("auth", "auth")
            continue
        candidates = [a for a in common.get(way, ()) if a in created]
        if not candidates:
            continue
        if way in ("key_name", "key_ids") and not info.can_import_keys():
            continue
        if way == "key_ids" and "list_key_pairs" not in info.implements:
            continue
        return Delivery(way, candidates[0])
    return None


def describe_delivery(plan_: CreatePlan) -> str:
    return plan_.delivery.describe() if plan_.delivery else "none"
