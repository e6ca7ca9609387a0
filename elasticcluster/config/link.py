"""Link checked sections into cluster templates.

A ``[cluster/NAME]`` section names its ``cloud``, ``login`` and
``setup_provider`` sections; its ``KIND_nodes`` keys say which kinds of node
it has, each configured by ``KIND_groups`` (and ``KIND_var_*``) of the setup
section and overridden by ``[cluster/NAME/KIND]``. A template with any
problem, or linking a section with one, is skipped with a warning; the
others still work.
"""
from __future__ import annotations

import difflib
import fnmatch
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from elasticcluster import cloud_catalog
from elasticcluster.config import cloud_keys, schema
from elasticcluster.config.reader import DEFAULT_CONFIG_PATH, Location, RawConfig, Section, read_config
from elasticcluster.exceptions import ConfigurationError, UsageError
from elasticcluster.limits import MAX_NODES

log = logging.getLogger("elasticcluster")

NODE_KEYS = tuple(schema.FIXED["node"])


@dataclass
class NodeKind:
    """One kind of node of a template, with its overrides applied."""

    kind: str
    count: int
    min_count: int
    groups: list[str]
    login: str
    image_id: str
    flavor: str
    security_group: str | None = None
    image_userdata: str = ""
    network_ids: list[str] = field(default_factory=list)
    vars: dict[str, object] = field(default_factory=dict)
    #: the other node-level keys (boot_disk_size, accelerator_type, ...), and under "create"
    #: the create_node arguments set by keys of the same name
    extra: dict[str, object] = field(default_factory=dict)
    #: create_node arguments with secret values (kept out of state files: read from here)
    create_secrets: dict[str, object] = field(default_factory=dict, repr=False)
    #: the ceiling of an autoscaled kind (``KIND_nodes_max``); None: the kind is not autoscaled
    max_count: int | None = None
    #: seconds an autoscaled node may stay idle before it goes (``autoscale_idle``)
    idle: int = 300

    @property
    def elastic_names(self) -> list[str]:
        """The names of the nodes above ``count`` up to ``max_count``, that autoscale makes."""
        return [f"{self.kind}{index:03d}" for index in range(self.count + 1, (self.max_count or 0) + 1)]


@dataclass
class ClusterTemplate:
    """A valid ``[cluster/NAME]`` with everything it links."""

    name: str
    cloud_name: str
    cloud: dict
    provider: str
    family: cloud_catalog.CloudFamily
    login_name: str
    logins: dict[str, dict]
    setup_name: str
    setup: dict
    cluster: dict
    kinds: dict[str, NodeKind]
    global_vars: dict[str, object]
    ssh_to: str | None = None

    @property
    def login(self) -> dict:
        return self.logins[self.login_name]

    def frontend_kind(self) -> str:
        """``ssh_to``, else the first kind in alphabetical order (seed 4.2.5)."""
        if self.ssh_to:
            return self.ssh_to
        return sorted(self.kinds)[0]

    def with_node_counts(self, counts: dict[str, int]) -> ClusterTemplate:
        """A copy with other node counts (``start --nodes N:KIND,...``)."""
        kinds = dict(self.kinds)
        for kind, count in counts.items():
            if kind not in kinds:
                raise UsageError(
                    f"--nodes: template '{self.name}' has no node kind '{kind}'; "
                    f"its kinds are: {', '.join(sorted(kinds))}")
            spec = kinds[kind]
            if spec.max_count is not None and count > spec.max_count:
                raise UsageError(f"--nodes {count}:{kind}: more than {kind}_nodes_max = {spec.max_count}")
            if count > MAX_NODES:
                raise UsageError(f"--nodes {count}:{kind}: a cluster holds at most {MAX_NODES} nodes")
            # with no KIND_min_nodes of its own, the minimum follows the count asked for
            minimum = count if spec.min_count == spec.count else min(spec.min_count, count)
            kinds[kind] = replace(spec, count=count, min_count=minimum)
        total = sum(spec.count for spec in kinds.values())
        if total > MAX_NODES:
            raise UsageError(f"--nodes: {total} nodes in all; a cluster holds at most {MAX_NODES}")
        return replace(self, kinds=kinds)

    def add_nodes(self, cluster, kind: str, count: int, names: list[str] | None = None) -> list:
        """Add ``count`` new nodes of ``kind`` to ``cluster`` (a ``Cluster``), configured as this
        template says (named ``names`` if given): the one place where a node kind becomes nodes."""
        spec = self.kinds[kind]
        extra = dict(spec.extra)
        image_user = extra.pop("image_user", None) or self.logins[spec.login]["image_user"]
        args = (spec.image_id, image_user, spec.flavor, spec.security_group, spec.image_userdata)
        options = {"network_ids": list(spec.network_ids), "login": spec.login, **extra}
        if names:
            return [cluster.add_node(kind, *args, name=name, **options) for name in names]
        return cluster.add_nodes(kind, count, *args, **options)

    def summary(self) -> dict:
        """What ``list-templates`` shows (no secrets)."""
        return {
            "name": self.name,
            "cloud": self.cloud_name,
            "provider": self.provider,
            "login": self.login_name,
            "setup": self.setup_name,
            "nodes": {kind: spec.count for kind, spec in sorted(self.kinds.items())},
            # autoscaled kinds: up to how many nodes `elasticcluster autoscale` makes
            "nodes_max": {kind: spec.max_count for kind, spec in sorted(self.kinds.items())
                          if spec.elastic_names},
            "frontend": self.frontend_kind(),
        }


@dataclass
class CloudSpec:
    """A checked ``[cloud/NAME]`` section."""

    name: str
    provider: str
    family: cloud_catalog.CloudFamily | None
    values: dict
    problems: list[str]


@dataclass
class Config:
    """The loaded configuration: valid templates and why the others were skipped."""

    path: Path
    files: list[Path]
    templates: dict[str, ClusterTemplate]
    skipped: dict[str, list[str]]
    secrets: set[str] = field(default_factory=set)
    clouds: dict[str, CloudSpec] = field(default_factory=dict)

    def cloud(self, name: str) -> CloudSpec:
        """The cloud section ``name`` (for clusters already started from it)."""
        spec = self.clouds.get(name)
        if spec is None:
            raise ConfigurationError(
                f"there is no [cloud/{name}] section in {', '.join(map(str, self.files))} any more; "
                "put it back to manage the clusters started on it")
        if spec.problems:
            raise ConfigurationError(f"[cloud/{name}] has errors", spec.problems)
        return spec

    def template(self, name: str) -> ClusterTemplate:
        if name in self.templates:
            return self.templates[name]
        if name in self.skipped:
            raise ConfigurationError(f"cluster template '{name}' has errors", self.skipped[name])
        known = sorted(self.templates) + sorted(self.skipped)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; defined templates: {', '.join(known)}" if known else "; there are no [cluster/NAME] sections")
        raise ConfigurationError(
            f"no cluster template '{name}' in {', '.join(map(str, self.files))}{hint}")

    def matching(self, patterns: list[str]) -> list[ClusterTemplate]:
        names = sorted(self.templates)
        if patterns:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        return [self.templates[n] for n in names]


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read, check and link the configuration at ``path`` (and ``path.d/``)."""
    from elasticcluster.config.check_cache import CheckCache

    raw = read_config(Path(path).expanduser())
    cache = CheckCache(Path(path))
    config = _Linker(raw, Path(path).expanduser(), cache).link()
    cache.save()
    return config


def cloud_section(name: str, values: dict[str, object], where: str = "<python>") -> CloudSpec:
    """A ``[cloud/NAME]`` section given as keys and values (the Python API), checked exactly
    as one read from a file; raises ConfigurationError naming each problem."""
    section = Section("cloud", name, Location(where), {k: str(v) for k, v in values.items() if v is not None})
    checked, family = _Linker(RawConfig([], {}), Path(where))._check_cloud(section)
    if checked.problems:
        raise ConfigurationError(f"[cloud/{name}] has errors", checked.problems)
    return CloudSpec(name, checked.values.get("provider", ""), family, checked.values, [])


def _declared_kinds(values: dict) -> set[str]:
    """Every KIND of a KIND_nodes key, valid count or not (so one bad count is one problem)."""
    return {k[: -len("_nodes")] for k in values if k.endswith("_nodes") and not k.endswith("_min_nodes")}


def _min_nodes_spelling(section: Section, values: dict, problems: list[str]) -> dict:
    """ElastiCluster 1.3's ``KIND_nodes_min`` (its documented spelling) as ``KIND_min_nodes``."""
    values = dict(values)
    for key in [k for k in values if k.endswith("_nodes_min")]:
        kind = key[: -len("_nodes_min")]
        other = f"{kind}_min_nodes"
        if other in values:
            problems.append(f"{section.locate(key)}: both {key} and {other} are given; keep one")
            continue
        values[other] = values.pop(key)
        section.where.setdefault(other, section.where.get(key, section.header))
    return values


def _ssh_to_kind(section: Section, ssh_to: str | None, declared: set[str], problems: list[str]):
    """The node kind ``ssh_to`` names: a kind, or (as ElastiCluster 1.3 allowed) a node's name."""
    if not ssh_to or not declared or ssh_to in declared:
        return ssh_to
    match = re.fullmatch(r"(.+?)(\d{3,})", ssh_to)
    if match and match.group(1) in declared:
        kind, index = match.group(1), int(match.group(2))
        if index != 1:
            log.warning("%s = %s: the frontend is the first %s node (%s001) while it exists",
                        section.locate("ssh_to"), ssh_to, kind, kind)
        return kind
    problems.append(f"{section.locate('ssh_to')} = {ssh_to!r} is not a node kind of this "
                    f"cluster; expected one of: {', '.join(sorted(declared))} (or a node's name, "
                    f"e.g. {sorted(declared)[0]}001)")
    return ssh_to


class _Linker:
    def __init__(self, raw: RawConfig, path: Path, cache=None):
        self.raw = raw
        self.path = path
        #: the sections cerberus found valid before (``check_cache.CheckCache``), or None
        self.cache = cache
        self.checked: dict[tuple[str, str], schema.Checked] = {}
        self.drivers: dict[str, cloud_keys.CloudDriver] = {}
        self.warned: set[str] = set()
        self.families: dict[str, cloud_catalog.CloudFamily | None] = {}
        self.secrets: set[str] = set()

    def link(self) -> Config:
        templates, skipped = {}, {}
        for (kind, name), section in sorted(self.raw.sections.items()):
            if kind != "cluster":
                continue
            problems, template = self._template(section)
            if problems:
                skipped[name] = problems
                log.warning("ignoring cluster template '%s':\n  - %s", name, "\n  - ".join(problems))
            else:
                templates[name] = template
        for (kind, name), section in self.raw.sections.items():
            if kind == "node" and name.split("/")[0] not in templates | skipped:
                log.warning("%s: there is no [cluster/%s] section for it; ignored",
                            section.locate(), name.split("/")[0])
        clouds = {}
        for (kind, name), section in self.raw.sections.items():
            if kind == "cloud":
                checked, family = self._check_cloud(section)
                driver = self._driver(section, family, checked)
                clouds[name] = CloudSpec(name, checked.values.get("provider", ""), family,
                                         checked.values, checked.problems + driver.build_problems)
        return Config(self.path, self.raw.files, templates, skipped, secrets=self.secrets,
                      clouds=clouds)

    # -- sections ---------------------------------------------------------

    def _section(self, type_: str, name: str) -> Section | None:
        return self.raw.sections.get((type_, name))

    def _check(self, section: Section, **rules) -> schema.Checked:
        key = (section.type, section.name)
        if key not in self.checked:
            self.checked[key] = schema.check_section(section, cache=self.cache, **rules)
        return self.checked[key]

    def _check_cloud(self, section: Section) -> tuple[schema.Checked, cloud_catalog.CloudFamily | None]:
        provider = section.values.get("provider", "").strip()
        driver = section.values.get("driver", "").strip() or None
        if not provider:
            return schema.Checked(problems=[
                f"{section.locate()}: required key 'provider' is missing; expected a libcloud "
                "compute provider name (ec2, gce, openstack, azure_arm, ...), or a seed name "
                "(ec2_boto, google, openstack), or local"]), None
        family = cloud_catalog.family_for(provider, driver)
        if family is None:
            close = cloud_catalog.close_provider_names(provider)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            return schema.Checked(problems=[
                f"{section.locate('provider')} = {provider!r} is not a known cloud provider{hint}; "
                "expected one of libcloud's compute providers, ec2_boto, google, openstack or "
                "local, or give driver = module:Class for a driver of your own"]), None
        rules, renamed, obsolete = schema.cloud_schema(family)
        env = {spec.name: spec.env for spec in family.keys.values() if spec.env}
        checked = self._check(section, schema=rules, renamed=renamed, obsolete=obsolete,
                              is_secret=family.is_secret, passthrough=family.passthrough,
                              env_fallback=env)
        for key, value in checked.values.items():
            if family.is_secret(key) and isinstance(value, str) and value:
                self.secrets.add(value)
        return checked, family

    def _driver(self, section: Section, family, checked: schema.Checked) -> cloud_keys.CloudDriver:
        """What the cloud section's driver takes (once per section; none for a broken one)."""
        if section.name not in self.drivers:
            if family is None or checked.problems:
                self.drivers[section.name] = cloud_keys.CloudDriver()
            else:
                self.drivers[section.name] = cloud_keys.cloud_driver(section, family, checked.values)
        return self.drivers[section.name]

    def _linked(self, cluster: Section, key: str, type_: str, value: str, problems: list[str]):
        section = self._section(type_, value)
        if section is None:
            defined = sorted(n for (t, n) in self.raw.sections if t == type_)
            close = difflib.get_close_matches(value, defined, n=1)
            hint = (f"; did you mean '{close[0]}'?" if close else
                    f"; defined: {', '.join(defined)}" if defined else
                    f" (no [{type_}/NAME] section is defined: add one, e.g. in a file of config.d/)")
            problems.append(f"{cluster.locate(key)} = {value!r}: there is no [{type_}/{value}] section{hint}")
        return section

    # -- one template -------------------------------------------------------

    def _template(self, section: Section) -> tuple[list[str], ClusterTemplate | None]:
        problems: list[str] = []
        setup_name = (section.values.get("setup_provider") or section.values.get("setup") or "").strip()
        setup_raw = self._section("setup", setup_name) if setup_name else None
        legacy_counts = {}
        if setup_raw is not None:
            for key in section.values:
                if (key not in schema.FIXED["cluster"] and re.fullmatch(schema.KIND, key)
                        and f"{key}_groups" in setup_raw.values and f"{key}_nodes" not in section.values):
                    legacy_counts[key] = f"{key}_nodes"
        # the cloud's driver first: it says which create_node arguments the cluster may set
        driver = None
        cloud_raw = self._section("cloud", (section.values.get("cloud") or "").strip())
        if cloud_raw is not None:
            cloud_checked, cloud_family = self._check_cloud(cloud_raw)
            driver = self._driver(cloud_raw, cloud_family, cloud_checked)
        create_patterns = cloud_keys.create_patterns(driver.plan if driver else None)
        checked = self._check(section, schema=schema.FIXED["cluster"],
                              patterns=create_patterns + schema.PATTERNS["cluster"],
                              renamed={**schema.RENAMED["cluster"], **legacy_counts},
                              obsolete=schema.OBSOLETE["cluster"])
        problems += checked.problems
        values = _min_nodes_spelling(section, checked.values, problems)
        cloud_sec = login_sec = setup_sec = None
        if values.get("cloud"):
            cloud_sec = self._linked(section, "cloud", "cloud", values["cloud"], problems)
        if values.get("login"):
            login_sec = self._linked(section, "login", "login", values["login"], problems)
        if values.get("setup_provider"):
            setup_sec = self._linked(section, "setup_provider", "setup", values["setup_provider"], problems)
        cloud = family = setup = None
        logins: dict[str, dict] = {}
        if cloud_sec is not None:
            cloud_checked, family = self._check_cloud(cloud_sec)
            problems += cloud_checked.problems
            problems += self._driver(cloud_sec, family, cloud_checked).problems
            cloud = cloud_checked.values
        if login_sec is not None:
            login_checked = self._check(login_sec, schema=schema.FIXED["login"])
            problems += login_checked.problems
            logins[login_sec.name] = login_checked.values
        if setup_sec is not None:
            setup_checked = self._check(setup_sec, schema=schema.FIXED["setup"],
                                        patterns=schema.PATTERNS["setup"])
            problems += setup_checked.problems
            setup = setup_checked.values
        plan = driver.plan if driver is not None and not driver.problems else None
        kinds = self._kinds(section, values, setup, setup_sec, logins, problems,
                            plan=plan, create_patterns=create_patterns, cloud_sec=cloud_sec)
        ssh_to = _ssh_to_kind(section, values.get("ssh_to"), _declared_kinds(values), problems)
        problems = list(dict.fromkeys(problems))
        if problems:
            return problems, None
        global_vars = {k[len("global_var_"):]: v for k, v in setup.items() if k.startswith("global_var_")}
        global_vars.update({k[len("global_var_"):]: v for k, v in values.items()
                            if k.startswith("global_var_")})
        return [], ClusterTemplate(
            name=section.name, cloud_name=cloud_sec.name, cloud=cloud, provider=cloud["provider"],
            family=family, login_name=login_sec.name, logins=logins, setup_name=setup_sec.name,
            setup=setup, cluster=values, kinds=kinds, global_vars=global_vars, ssh_to=ssh_to)

    def _kinds(self, section: Section, values: dict, setup: dict | None, setup_sec: Section | None,
               logins: dict[str, dict], problems: list[str], plan=None, create_patterns=(),
               cloud_sec: Section | None = None) -> dict[str, NodeKind] | None:
        counts = {k[: -len("_nodes")]: v for k, v in values.items()
                  if k.endswith("_nodes") and not k.endswith("_min_nodes") and isinstance(v, int)}
        if not counts:
            if not any(k.endswith("_nodes") and not k.endswith("_min_nodes") for k in values):
                problems.append(f"{section.locate()}: no KIND_nodes key; expected at least one, "
                                "e.g. frontend_nodes = 1 and compute_nodes = 2")
            return None
        if max(counts.values()) <= MAX_NODES < sum(counts.values()):  # (a count above it is one problem)
            problems.append(f"{section.locate()}: {sum(counts.values())} nodes in all (KIND_nodes); a "
                            f"cluster holds at most {MAX_NODES}")
        kinds = {}
        for kind, count in sorted(counts.items()):
            node_sec = self._section("node", f"{section.name}/{kind}")
            node = dict(values)
            where = {k: section for k in section.values}
            if node_sec is not None:
                node_checked = self._check(node_sec, schema=schema.FIXED["node"],
                                           patterns=list(create_patterns) + schema.PATTERNS["node"])
                problems += node_checked.problems
                node.update(node_checked.values)
                where.update({k: node_sec for k in node_sec.values})
            create = cloud_keys.CreateKeys()
            if plan is not None:
                create = cloud_keys.create_keys(plan, node, where, problems)
                cloud_keys.check_kind(plan, cloud_sec.values.get("provider", "").strip(), cloud_sec, node,
                                      {**where, "@cluster": section}, kind, section.title,
                                      set(create.values) | set(create.secrets), problems, self.warned)
            extra = {k: node[k] for k in NODE_KEYS
                     if k in node and k not in ("image_id", "flavor", "security_group", "image_userdata",
                                                "network_ids", "login", "autoscale_idle")}
            if create.values:
                extra["create"] = create.values
            if create.secrets:
                extra["create_secrets"] = {"template": section.name, "keys": sorted(create.secrets)}
            if plan is None:  # no driver known (a broken cloud section): as written
                extra.update({k: v for k, v in node.items() if k.startswith("ex_")})
            where = node_sec if node_sec is not None and "image_id" in node_sec.values else section
            groups: list[str] = []
            if setup is not None:
                groups = setup.get(f"{kind}_groups") or []
                if not groups:
                    problems.append(
                        f"{setup_sec.locate()}: no '{kind}_groups' key for the {kind} nodes of "
                        f"{section.title}; expected {kind}_groups = a comma-separated list of "
                        "Ansible groups")
            for key in ("image_id", "flavor"):
                if not node.get(key):
                    problems.append(
                        f"{where.locate()}: required key '{key}' is missing for the {kind} nodes; "
                        f"expected {schema.FIXED['node'][key]['meta']['expect']} in {section.title} "
                        f"or [cluster/{section.name}/{kind}]")
            login = node.get("login") or values.get("login")
            if node_sec is not None and "login" in node_sec.values and login not in logins:
                login_sec = self._linked(node_sec, "login", "login", login, problems)
                if login_sec is not None:
                    checked = self._check(login_sec, schema=schema.FIXED["login"])
                    problems += checked.problems
                    logins[login] = checked.values
            min_count = values.get(f"{kind}_min_nodes", count)
            if min_count > count:
                problems.append(f"{section.locate(f'{kind}_min_nodes')} = {min_count} is more than "
                                f"{kind}_nodes = {count}; expected at most {count}")
            max_count = values.get(f"{kind}_nodes_max")
            if max_count is not None and max_count < count:
                problems.append(f"{section.locate(f'{kind}_nodes_max')} = {max_count} is less than "
                                f"{kind}_nodes = {count}; expected {count} or more")
            kind_vars = {}
            if setup is not None:
                prefix = f"{kind}_var_"
                kind_vars = {k[len(prefix):]: v for k, v in setup.items() if k.startswith(prefix)}
            kinds[kind] = NodeKind(
                kind=kind, count=count, min_count=min_count, groups=list(groups), login=login,
                image_id=node.get("image_id", ""), flavor=node.get("flavor", ""),
                security_group=node.get("security_group"), image_userdata=node.get("image_userdata", ""),
                network_ids=list(node.get("network_ids") or []), vars=kind_vars, extra=extra,
                create_secrets=create.secrets, max_count=max_count, idle=node.get("autoscale_idle") or 300)
        for (type_, name), node_sec in self.raw.sections.items():
            owner, _, kind = name.partition("/")
            if type_ == "node" and owner == section.name and kind not in counts:
                log.warning("%s: %s has no %s_nodes key; this section is ignored",
                            node_sec.locate(), section.title, kind)
        return kinds
