"""Which clouds elasticcluster reaches, and how: the report of ``elasticcluster list-clouds``.

For every compute provider of the installed libcloud (and every name of a
``drivers/*.toml``): whether a mapping file covers it, whether a
configuration section alone can start nodes on it (its driver imports, its
``create_node`` takes an image and a size, the login's SSH key can reach the
node, every required argument can be set), how the SSH key gets there, where
nodes start, and what the cloud section must hold. Read from the drivers'
code (``driver_info``), the same reading that checks configurations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from elasticcluster import cloud_catalog, create_args, driver_info
from elasticcluster.exceptions import ConfigurationError


@dataclass
class Reach:
    provider: str
    #: the mapping file (``ec2.toml``), or None for a pass-through provider
    mapped: str | None
    driver: str | None
    reachable: bool
    #: why not, when not reachable
    why: list[str] = field(default_factory=list)
    ssh_key: str = "none"
    #: "required", "optional" or "none": whether create_node takes a location
    location: str = "none"
    #: what a cloud section gives the constructor (pass-through providers)
    required: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    #: create_node arguments that nothing fills and a cluster section must set
    needs: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def provider_names() -> list[str]:
    """Every provider name: libcloud's compute providers and the mapping files' names."""
    return sorted(set(cloud_catalog.libcloud_providers()) | set(cloud_catalog.mapped_families()))


def reach(provider: str) -> Reach:
    """How far a configuration alone gets on ``provider``."""
    from elasticcluster.cloud import driver_class

    family = cloud_catalog.family_for(provider)
    mapped = None if family.passthrough else f"{family.name}.toml"
    try:
        info = driver_info.driver_for(provider, family.driver, {}, lambda: driver_class(provider, family))
    except ConfigurationError as err:
        return Reach(provider, mapped, None, False, [str(err).removeprefix(f"provider = {provider}: ")])
    plan = create_args.plan(family, info)
    found = Reach(provider, mapped, info.name, True, ssh_key=create_args.describe_delivery(plan))
    if family.passthrough:
        found.required = [p.name for p in info.init.values() if p.required]
        found.optional = [p.name for p in info.init.values() if not p.required]
    if plan.location_arg:
        param = info.create.get(plan.location_arg)
        found.location = "required" if param is not None and param.required else "optional"
    if plan.delivery is None:
        found.why.append("no way to put an SSH key on a node (no auth taking an SSH key, no key-pair, "
                         "public-key or user-data argument)")
    for name, what in (("image", "image_id"), ("size", "flavor")):
        if name not in info.create and not info.create_kwargs:
            found.why.append(f"create_node takes no {name} ({what} cannot be honoured)")
    for name in plan.missing(set()):
        param = info.create[name]
        if param.type == "object" and not _can_find(info, name):
            found.why.append(f"create_node needs {name}, a {param.of or 'cloud object'} that no "
                             "configuration value can give")
        else:
            found.needs.append(name)
    found.reachable = not found.why
    return found


def _can_find(info: driver_info.DriverInfo, name: str) -> bool:
    from elasticcluster.cloud import lister_for

    return lister_for(info, name) is not None


def summary(reaches: list[Reach]) -> dict:
    """The figures the README quotes: over libcloud's providers, and over those without a file."""
    libcloud = set(cloud_catalog.libcloud_providers())
    ours = [r for r in reaches if r.provider in libcloud]
    unmapped = [r for r in ours if r.mapped is None]
    return {
        "libcloud_providers": len(ours),
        "mapped": sum(1 for r in ours if r.mapped),
        "reachable": sum(1 for r in ours if r.reachable),
        "unmapped_reachable": sum(1 for r in unmapped if r.reachable),
        "unmapped": len(unmapped),
    }
