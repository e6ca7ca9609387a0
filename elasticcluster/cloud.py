"""One cloud as the node lifecycle sees it: a libcloud driver and its family's mapping.

Everything that differs between clouds is read from the family's mapping
file (``drivers/*.toml``): constructor arguments, ``create_node`` argument
names, where nodes keep their tags, which methods manage security groups and
floating IPs. The code here is the same for every cloud.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import inspect
import logging
import os
import random
import re
import socket
import threading
import time
from urllib.parse import urlsplit

from elasticcluster import create_args, driver_info
from elasticcluster.cloud_catalog import CloudFamily
from elasticcluster.exceptions import (
    CloudError,
    ConfigurationError,
    QuotaExceeded,
    TransientCloudError,
)
from elasticcluster.tags import TAG_CLUSTER, TAG_NODE, label_value
from elasticcluster.tags import instance_name as cloud_name

log = logging.getLogger("elasticcluster")

#: keys of a cloud section that are not constructor arguments of a pass-through driver
CREATE_TIME_KEYS = ("location",)

_QUOTA = re.compile(r"InstanceLimitExceeded|InsufficientInstanceCapacity|VcpuLimitExceeded|"
                    r"QuotaExceeded|Quota exceeded|QUOTA_EXCEEDED|quota|capacity|"
                    r"InsufficientAddressCapacity|MaxSpotInstanceCountExceeded", re.I)
_TRANSIENT = re.compile(r"RequestLimitExceeded|Throttl|ServiceUnavailable|InternalError|"
                        r"Unavailable|temporarily|try again|timed out|Connection reset|"
                        r"\b50[0234]\b|\b429\b", re.I)
_UNREADABLE = "(the cloud's answer could not be read)"
_EXISTS = re.compile(r"Duplicate|already exists|exists already|AlreadyExists", re.I)
_NOT_FOUND = re.compile(r"NotFound|not found|does not exist|No such|\b404\b", re.I)
_AUTH = re.compile(r"AuthFailure|InvalidClientTokenId|SignatureDoesNotMatch|Unauthorized|"
                   r"InvalidCreds|Forbidden|\b401\b|UnrecognizedClient", re.I)


#: retries of a transient error (throttling, 5xx, a dropped connection), and the first
#: back-off delay in seconds (doubled each time, with jitter): about 15 s in all
RETRIES = 5
BACKOFF = float(os.environ.get("ELASTICCLUSTER_RETRY_BACKOFF") or 0.5)


def classify(error: BaseException) -> type[CloudError]:
    """The CloudError class that fits a driver exception."""
    from libcloud.common.exceptions import RateLimitReachedError
    from libcloud.common.types import InvalidCredsError, ServiceUnavailableError

    text = f"{type(error).__name__}: {describe(error)}"
    if isinstance(error, InvalidCredsError) or _AUTH.search(text):
        return CloudError
    if _QUOTA.search(text):
        return QuotaExceeded
    if isinstance(error, (RateLimitReachedError, ServiceUnavailableError, socket.timeout,
                          ConnectionError, TimeoutError)) or _TRANSIENT.search(text):
        return TransientCloudError
    try:
        import requests

        if isinstance(error, (requests.ConnectionError, requests.Timeout)):
            return TransientCloudError
    except ImportError:
        pass
    return CloudError


def describe(error: BaseException) -> str:
    """A one-line description of a driver exception, without secrets (redaction is on top).

    An HTTP error whose body the driver could not read (libcloud then gives no message) is
    described by its status: ``HTTP 503 (the cloud's answer could not be read)``.
    """
    text = str(error).strip()
    status = getattr(error, "code", None) or getattr(error, "status", None)
    if not text:
        text = type(error).__name__
        if isinstance(status, int):
            text += f": HTTP {status} {_UNREADABLE}"
    text = re.sub(r"\s+", " ", text)
    return text if len(text) < 900 else text[:897] + "..."


# -- building the driver ---------------------------------------------------------


def driver_class(provider: str, family: CloudFamily):
    """The libcloud driver class of ``family`` (registering a ``driver = module:Class``)."""
    from libcloud.compute.providers import get_driver, set_driver

    if family.driver:
        module, _, name = family.driver.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ConfigurationError(f"driver = {family.driver}: cannot load it ({err}); expected "
                                     "package.module:NodeDriverClass importable by this Python") from None
        key = f"elasticcluster-{provider}"
        try:
            set_driver(key, module, name)
        except AttributeError:  # already registered by an earlier call
            pass
        return cls
    try:
        return get_driver(family.libcloud)
    except ImportError as err:
        raise ConfigurationError(f"provider = {provider}: its libcloud driver needs a Python package "
                                 f"that is not installed ({err.name or err}); install it with pip") from None
    except AttributeError:
        raise ConfigurationError(
            f"provider = {provider}: the installed libcloud has no such driver") from None


def init_parameters(cls) -> tuple[list[str], list[str]]:
    """(required, optional) constructor parameters of a driver class, through its bases."""
    params = driver_info.constructor_params(cls)
    return ([p.name for p in params.values() if p.required],
            [p.name for p in params.values() if not p.required])


def _parameters_text(cls) -> str:
    return driver_info.read(cls).init_text()


def constructor_args(provider: str, family: CloudFamily, cloud: dict, cls) -> tuple[dict, dict]:
    """(constructor keyword arguments, attributes to set afterwards) from a cloud section."""
    attributes = {}
    if family.passthrough:
        return {**family.constructor, **_passthrough_args(provider, cloud, cls)}, attributes
    args = {}
    implied = {}  # set by a URL's suffix: above the mapping's constants, below the keys given
    for spec in family.keys.values():
        value = cloud.get(spec.name)
        if spec.arg is None or value is None or value == "":
            continue
        for suffix, extra in spec.url_suffixes.items():
            if str(value).rstrip("/").endswith(suffix):
                value = str(value).rstrip("/")[: -len(suffix)]
                implied.update(extra)
                break
        if spec.unlisted and value not in getattr(cls, spec.unlisted["list"])():
            attributes[spec.unlisted["attribute"]] = value
            continue
        if spec.arg == "@url":
            parts = urlsplit(value)
            args.update(host=parts.hostname, secure=parts.scheme == "https")
            try:
                port = parts.port
            except ValueError as err:
                raise ConfigurationError(f"[cloud] {spec.name} = {value}: {err}; expected a URL such as "
                                         "https://host:8773/path") from None
            if port:
                args["port"] = port
            if parts.path and parts.path != "/":
                attributes["path"] = parts.path
            continue
        args[spec.arg] = spec.values.get(str(value), value)
    return {**family.constructor, **implied, **args}, attributes


def passthrough_keys(cloud: dict, params: dict) -> dict:
    """The keys of a pass-through cloud section that are constructor arguments."""
    return {k: v for k, v in cloud.items()
            if k not in ("provider", "driver") and not (k in CREATE_TIME_KEYS and k not in params)}


def _passthrough_args(provider: str, cloud: dict, cls) -> dict:
    params = driver_info.constructor_params(cls)
    given = passthrough_keys(cloud, params)
    unknown = sorted(k for k in given if k not in params)
    missing = [k for k, p in params.items() if p.required and k not in given]
    if not given and not missing:
        missing = ["at least one of its settings (credentials or endpoint)"]
    if unknown or missing:
        what = []
        if missing:
            what.append(f"missing {', '.join(missing)}")
        if unknown:
            what.append(f"unknown {', '.join(unknown)}")
        raise ConfigurationError(
            f"[cloud] provider = {provider}: {'; '.join(what)}; {_parameters_text(cls)}")
    args = {}
    for key, value in given.items():
        try:
            args[key] = driver_info.convert(params[key], value)
        except ValueError:
            raise ConfigurationError(f"[cloud] provider = {provider}: {key} cannot be read; expected "
                                     f"{params[key].expect()}") from None
    return args


parse_scalar = driver_info.parse_scalar


def build_driver(provider: str, family: CloudFamily, cloud: dict):
    """A connected libcloud driver for one cloud section (checked values)."""
    cls = driver_class(provider, family)
    args, attributes = constructor_args(provider, family, cloud, cls)
    try:
        driver = cls(**args)
    except TypeError as err:
        raise ConfigurationError(f"provider = {provider}: the driver refused its arguments ({err}); "
                                 f"{_parameters_text(cls)}") from None
    except Exception as err:  # driver constructors may contact the cloud
        raise classify(err)(f"cannot connect to cloud ({provider}): {describe(err)}") from err
    for name, value in attributes.items():
        setattr(driver, name, value)
    return driver


# -- one cluster on one cloud ----------------------------------------------------


class CloudProvider:
    """The operations of the node lifecycle on one cloud, for one cluster."""

    def __init__(self, driver, family: CloudFamily, cloud: dict, cluster_name: str | None = None,
                 factory=None, config=None, cloud_section: str | None = None):
        self._main_driver = driver
        #: makes one more driver: libcloud connections are not thread-safe (a connection keeps
        #: its last response), so each worker thread gets a driver of its own
        self._factory = factory
        self._local = threading.local()
        self.family = family
        self.cloud = cloud
        self.cluster_name = cluster_name
        #: the configuration, for values that state files do not keep (secret create_node keys)
        self.config = config
        self.cloud_section = cloud_section or "cloud/NAME"
        self._images: dict[str, object] = {}
        self._sizes: dict[str, object] | None = None
        self._locations: list | None = None
        self._found: dict[tuple[str, str], object] = {}
        self._key_pairs: dict[str, object] = {}
        self._lock = threading.Lock()
        #: what the driver's create_node takes, and which argument carries what
        self.info = driver_info.read_class(type(driver))
        self.plan = create_args.plan(family, self.info)

    def for_cluster(self, name: str) -> CloudProvider:
        """This provider scoped to cluster ``name`` (its tags and instance names): itself when it
        has no cluster yet or this one, else a copy that shares its drivers and lookups."""
        if self.cluster_name in (None, name):
            self.cluster_name = name
            return self
        scoped = copy.copy(self)
        scoped.cluster_name = name
        return scoped

    @property
    def driver(self):
        """This thread's driver (the first one for the thread that made the provider)."""
        driver = getattr(self._local, "driver", None)
        if driver is None:
            if self._factory is None or threading.current_thread() is threading.main_thread():
                driver = self._main_driver
            else:
                driver = self._factory()
            self._local.driver = driver
        return driver

    # -- calls ---------------------------------------------------------------

    def call(self, what: str, method, *args, **kwargs):
        """Call a driver method; driver exceptions become CloudError subclasses."""
        try:
            return method(*args, **kwargs)
        except NotImplementedError:
            raise
        except CloudError:
            raise
        except Exception as err:
            raise classify(err)(f"{what}: {describe(err)}") from err

    def read(self, what: str, method, *args, **kwargs):
        """``call`` for what may be asked again: reads, and terminate/stop/start of an instance.
        A transient error is retried with exponential back-off (``RETRIES``, ``BACKOFF``)."""
        delay = BACKOFF
        for attempt in range(RETRIES + 1):
            try:
                return self.call(what, method, *args, **kwargs)
            except TransientCloudError as err:
                if attempt == RETRIES:
                    raise
                log.info("%s; retrying in %.1fs", err, delay)
                time.sleep(delay * (1 + random.random() / 2))
                delay *= 2

    def create_arg(self, purpose: str):
        """The argument of one create purpose (userdata, tags, ...) and its options, or None."""
        return self.plan.purposes.get(purpose)

    def check_extra_args(self, extra: dict) -> None:
        """Refuse keys that the driver's ``create_node`` does not take."""
        if self.info.create_kwargs:
            return
        unknown = sorted(k for k in extra if k not in self.info.create)
        if unknown:
            raise ConfigurationError(
                f"{', '.join(unknown)}: not a parameter of {self.info.name}.create_node, which takes: "
                f"{', '.join(self.info.create)}")

    def check_node(self, node) -> None:
        """Everything ``node``'s create call needs beyond image and flavor, found before any node
        is created: its location, the objects its keys name, the arguments the driver requires."""
        if self.plan.delivery is None:
            raise ConfigurationError(f"[{self.cloud_section}] provider: {self.plan.refusal()}")
        self.check_extra_args({k: v for k, v in node.extra.items() if k.startswith("ex_")})
        given = set(self._create_keys(node)) | set(self._cloud_create_args())
        missing = [name for name in self.plan.missing(given)]
        if missing:
            raise ConfigurationError(
                f"{self.info.name}.create_node needs {', '.join(missing)}, which nothing sets: add "
                + " and ".join(f"{name} = ..." for name in missing)
                + f" to [cluster/NAME] or [cluster/NAME/{node.kind}]")
        if self.plan.location_arg:
            name = self._location_name(node)
            param = self.info.create.get(self.plan.location_arg)
            if not name and param is not None and param.required:
                listed = self._listed_locations()
                raise ConfigurationError(
                    f"{self.info.name}.create_node needs a location, which nothing sets: add location = "
                    f"ID or name to [{self.cloud_section}] (or to [cluster/NAME] or "
                    f"[cluster/NAME/{node.kind}])" + (f"; this cloud has: {listed}" if listed else ""))
            if name and self.plan.location_object:
                self.location(name)
        for name, value in self._create_keys(node).items():
            self._objects(name, value)

    # -- listing -----------------------------------------------------------------

    def tags_of(self, instance) -> dict:
        """The instance's tags: a dict, or from a list of ``key=value`` items."""
        field = self.family.node_fields.get("tags", "tags")
        tags = (instance.extra or {}).get(field) or {}
        if isinstance(tags, (list, tuple)):
            return dict(str(item).split("=", 1) for item in tags if "=" in str(item))
        return tags if isinstance(tags, dict) else {}

    def tag_value(self, value: str) -> str:
        """``value`` as the cloud keeps it in a tag: as is, or (``[nodes] tag_values = "label"``)
        by the rules of GCE labels: lower case letters, digits, '_' and '-', at most 63."""
        if self.family.node_fields.get("tag_values") == "label":
            return label_value(value)
        return value

    def node_name_of(self, instance) -> str | None:
        """The elasticcluster node name of a cloud instance of this cluster, else None."""
        tags = self.tags_of(instance)
        if tags.get(TAG_CLUSTER) == self.tag_value(self.cluster_name) and tags.get(TAG_NODE):
            return tags[TAG_NODE]
        if tags.get(TAG_CLUSTER):
            return None
        prefix = cloud_name(self.cluster_name, "")
        name = instance.name or ""
        if name.startswith(prefix) and re.fullmatch(r"[a-z0-9_-]*\d{3,}", name[len(prefix):]):
            return name[len(prefix):]
        return None

    def client_token_of(self, instance) -> str | None:
        field = self.family.node_fields.get("client_token")
        return (instance.extra or {}).get(field) if field else None

    def list_instances(self, known_ids=()) -> list:
        """Every instance of this cluster: one ``list_nodes`` call, narrowed to the cluster's
        tag where the mapping says how (``[listing] filter``), then the instances of
        ``known_ids`` that listing did not return, looked up by id (``[listing] by_ids``):
        a listing may be cut short (paging), and a recorded instance is never taken for gone
        just because a listing missed it."""
        spec = self.family.listing
        kwargs = {}
        if spec.get("filter"):
            kwargs[spec["filter"]] = {key: str(value).replace("$cluster", self.tag_value(self.cluster_name))
                                      for key, value in spec.get("filter_values", {}).items()}
        instances = self.read("listing the nodes", self.driver.list_nodes, **kwargs)
        # an instance whose id the state file holds is the cluster's, whatever its name became
        known = {str(i) for i in known_ids if i}
        mine = [i for i in instances if self.node_name_of(i) is not None or str(i.id) in known]
        seen = {str(i.id) for i in mine}
        missing = [i for i in dict.fromkeys(known_ids) if i and str(i) not in seen]
        if missing and spec.get("by_ids"):
            for start in range(0, len(missing), 100):
                mine += self._by_ids(spec["by_ids"], missing[start:start + 100])
        return mine

    def _by_ids(self, argument: str, ids: list[str]) -> list:
        """Instances of ``ids`` (one call; one call each if the cloud refuses an unknown id)."""
        try:
            return list(self.read("looking nodes up", self.driver.list_nodes, **{argument: ids}))
        except CloudError:
            if len(ids) == 1:
                return []  # gone for good
        found = []
        for one in ids:
            found += self._by_ids(argument, [one])
        return found

    def instance_stub(self, instance_id: str, name: str | None = None):
        """A libcloud Node for an id the cloud did not list (to terminate it anyway)."""
        from libcloud.compute.base import Node
        from libcloud.compute.types import NodeState

        return Node(id=instance_id, name=name or instance_id, state=NodeState.UNKNOWN, public_ips=[],
                    private_ips=[], driver=self.driver)

    # -- key pair, security group, image, size -----------------------------------

    def ensure_key_pair(self, name: str, public_key: str) -> None:
        """Where the SSH key goes in a key pair (``key_name``/``key_ids``): import ``public_key``
        as ``name`` unless there (once, then reuse it); refuse a different key of that name."""
        delivery = self.plan.delivery
        if delivery is None or delivery.way not in ("key_name", "key_ids"):
            return
        existing = self._key_pair(name)
        if existing is None:
            log.info("importing SSH key pair '%s'", name)
            try:
                existing = self._import_key_pair(name, public_key)
            except CloudError:
                # there after all (a try whose answer was lost, or someone else meanwhile)? the
                # cloud's error may not say so readably: ask it
                existing = self._key_pair(name)
                if existing is None:
                    raise
                self._check_same_key(name, existing, public_key)
            if existing is not None:
                self._key_pairs[name] = existing
            return
        self._check_same_key(name, existing, public_key)
        self._key_pairs[name] = existing

    def _import_key_pair(self, name: str, public_key: str):
        what = f"importing key pair '{name}'"
        if "import_key_pair_from_string" in self.info.implements:
            return self.read(what, self.driver.import_key_pair_from_string, name, public_key)
        # DigitalOcean, Linode, Maxihost... take the public key in create_key_pair
        params = inspect.signature(self.driver.create_key_pair).parameters
        arg = next(a for a in ("public_key", "ex_public_key", "key_material") if a in params)
        return self.read(what, self.driver.create_key_pair, name, **{arg: public_key})

    @staticmethod
    def _check_same_key(name: str, existing, public_key: str) -> None:
        from elasticcluster import ssh_keys

        held = getattr(existing, "public_key", None)
        if held and len(str(held).split()) >= 2:
            same = str(held).split()[1] == public_key.split()[1]
        else:
            same = ssh_keys.matches(public_key, getattr(existing, "fingerprint", None))
        if same is False:
            shown = getattr(existing, "fingerprint", None) or "a different public key"
            raise CloudError(
                f"a key pair named '{name}' already exists on the cloud with another key "
                f"(fingerprint {shown}); set user_key_name to a new name, or "
                "user_key_public/user_key_private to the key it holds")
        if same is None:
            log.warning("cannot check that key pair '%s' on the cloud holds %s (no fingerprint)",
                        name, "your public key")

    def key_pair_id(self, name: str):
        """The id the cloud gave key pair ``name`` (for drivers that take key ids)."""
        pair = self._key_pairs.get(name)
        if pair is None:
            pair = self._key_pair(name)
            if pair is None:
                raise CloudError(f"key pair '{name}' is not on the cloud (was it deleted meanwhile?)")
            self._key_pairs[name] = pair
        extra = getattr(pair, "extra", None) or {}
        return extra.get("id") or extra.get("uuid") or pair.name

    def _key_pair(self, name: str):
        """The cloud's key pair ``name``, or None (one listing call)."""
        try:
            pairs = self.read("listing key pairs", self.driver.list_key_pairs)
        except NotImplementedError:
            return None
        return next((pair for pair in pairs if pair.name == name), None)

    def ensure_security_group(self, name: str) -> None:
        spec = self.family.security_group
        if not spec or not name:
            return
        network = self.network_id()
        if network and spec.get("in_network"):
            return self._ensure_group_in(spec["in_network"], name, network)
        if self._group(spec, name) is not None:
            return
        log.info("creating security group '%s' with SSH open", name)
        try:
            group = self._invoke(spec["create"], retry=True, name=name)
        except CloudError:
            # made by a try whose answer was lost, or by someone else meanwhile (the cloud's
            # error may not say so readably): ask it
            group = self._group(spec, name)
            if group is None:
                raise
        for attempt in (1, 2):
            try:
                self._invoke(spec["allow_ssh"], retry=True, name=name, group=group)
                return
            except CloudError as err:
                if _EXISTS.search(str(err)):
                    return  # opened by a try whose answer was lost
                if attempt == 2 and _UNREADABLE in str(err):
                    # after a lost answer, the cloud's "duplicate" may come back unreadable: the
                    # SSH wait tells soon enough whether port 22 is open
                    log.warning("security group '%s': could not make sure SSH is open (%s); if the "
                                "nodes never accept SSH, open port 22 in it", name, err)
                    return
                if attempt == 2:
                    raise
                # some drivers turn a lost answer into an error of their own: once more tells
                log.info("%s; trying once more", err)

    def _group(self, spec: dict, name: str):
        """The security group ``name`` (the driver's object, or its name), or None."""
        groups = self.read("listing security groups", getattr(self.driver, spec["list"]))
        for group in groups:
            if (group if isinstance(group, str) else getattr(group, "name", None)) == name:
                return group
        return None

    def _ensure_group_in(self, spec: dict, name: str, network: str) -> None:
        """Security group ``name`` of ``network`` (a VPC), made there with SSH open unless there."""
        groups = self._invoke(spec["list"], network=network)
        if any(getattr(g, "name", None) == name for g in groups):
            return
        log.info("creating security group '%s' in %s with SSH open", name, network)
        made = self._invoke(spec["create"], name=name, network=network)
        group_id = made.get("group_id") if isinstance(made, dict) else getattr(made, "id", made)
        self._invoke(spec["allow_ssh"], name=name, group_id=group_id)

    def network_id(self) -> str | None:
        """The id of the network (VPC) the cloud section's ``resolve = "subnet_of"`` key names."""
        for spec in self.family.keys.values():
            create = spec.create if isinstance(spec.create, dict) else {}
            value = self.cloud.get(spec.name)
            if create.get("resolve") == "subnet_of" and value:
                key = ("network", str(value))
                if key not in self._found:
                    networks = self.read("listing networks", getattr(self.driver, create["networks"]))
                    match = [n for n in networks if value in (n.id, getattr(n, "name", None))]
                    if not match:
                        raise CloudError(f"{spec.name} '{value}' does not exist on this cloud")
                    self._found[key] = match[0]
                return self._found[key].id
        return None

    def _invoke(self, spec, retry: bool = False, **values):
        """Call ``{"call": method, "args": [...], "filters": {...}}`` with ``$name`` placeholders
        filled in (in arguments, and in the values of a ``filters`` keyword)."""
        if isinstance(spec, str):
            spec = {"call": spec, "args": []}

        def fill(a):
            return values.get(a[1:]) if isinstance(a, str) and a.startswith("$") else a

        args = [fill(a) for a in spec.get("args", [])]
        kwargs = {"filters": {k: fill(v) for k, v in spec["filters"].items()}} if "filters" in spec else {}
        # ``retry``: for calls where a try whose answer was lost shows as "already exists"
        call = self.read if retry else self.call
        return call(spec["call"], getattr(self.driver, spec["call"]), *args, **kwargs)

    def image(self, image_id: str):
        with self._lock:
            if image_id not in self._images:
                self._images[image_id] = self._find_image(image_id)
            return self._images[image_id]

    def _find_image(self, image_id: str):
        try:
            image = self.read(f"looking up image '{image_id}'", self.driver.get_image, image_id)
            if image is not None:
                return image
        except NotImplementedError:
            pass
        except TransientCloudError:
            raise
        except CloudError as err:  # not found by id (some clouds say so with an error): try names
            if _AUTH.search(str(err)):
                raise
        images = self._listing("images", self.driver.list_images)
        for image in images:
            if image_id in (image.id, image.name):
                return image
        names = [i.name for i in images if i.name] + [i.id for i in images]
        close = difflib.get_close_matches(image_id, names, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise CloudError(f"image '{image_id}' does not exist on this cloud{hint}")

    def size(self, flavor: str):
        with self._lock:
            if self._sizes is None:
                sizes = self._listing("flavors", self.driver.list_sizes)
                self._sizes = {s.id: s for s in sizes}
                self._sizes.update({s.name: s for s in sizes if s.name})
        if flavor in self._sizes:
            return self._sizes[flavor]
        close = difflib.get_close_matches(flavor, list(self._sizes), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else (
            f"; available: {', '.join(sorted(self._sizes)[:20])}" if self._sizes else "")
        raise CloudError(f"flavor '{flavor}' does not exist on this cloud{hint}")

    def _listing(self, what: str, method) -> list:
        """``list_images``/``list_sizes``, given the cloud section's location where the driver
        lists them per location only (Kamatera)."""
        try:
            param = inspect.signature(method).parameters.get("location")
        except (TypeError, ValueError):
            param = None
        if param is None or param.default is not param.empty:
            return self.read(f"listing {what}", method)
        name = self._location_name(None)
        if not name:
            raise ConfigurationError(f"{self.info.name} lists {what} per location: add location = ID or name "
                                     f"to [{self.cloud_section}]")
        return self.read(f"listing {what}", method, self.location(name))

    def _resolve(self, options: dict, values):
        """Map ids/names to the driver's objects (``resolve``/``by`` in the mapping)."""
        method = options.get("resolve")
        if not method:
            return values
        items = self.read(f"listing for {options['arg']}", getattr(self.driver, method))
        by = options.get("by", "id")
        found = []
        for value in values:
            match = [i for i in items if getattr(i, by, None) == value or getattr(i, "name", None) == value]
            if not match:
                raise CloudError(f"{options['arg']}: '{value}' does not exist on this cloud")
            found.append(match[0])
        return found[0] if options.get("single") else found

    # -- locations and the objects of create_node arguments ----------------------

    def _listed_locations(self) -> str:
        """The cloud's locations, for a message ('' when it cannot list them)."""
        try:
            locations = self._all_locations()
        except (CloudError, NotImplementedError):
            return ""
        names = [f"{loc.id} ({loc.name})" if loc.name and loc.name != loc.id else str(loc.id)
                 for loc in locations]
        return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")

    def _all_locations(self) -> list:
        with self._lock:
            if self._locations is None:
                self._locations = list(self.read("listing locations", self.driver.list_locations))
            return self._locations

    def location(self, name: str):
        """The cloud's location whose id or name is ``name`` (close matches when none is)."""
        locations = self._all_locations()
        for location in locations:
            if name in (str(location.id), location.name):
                return location
        names = [str(loc.id) for loc in locations] + [loc.name for loc in locations if loc.name]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else (
            f"; available: {self._listed_locations()}" if locations else "")
        raise CloudError(f"location '{name}' does not exist on this cloud{hint}")

    def _location_name(self, node) -> str | None:
        """The location of ``node``: its kind's or cluster's ``location`` (or 1.3's
        ``availability_zone``), else the cloud section's (unless there it is a constructor key)."""
        extra = node.extra if node else {}
        name = extra.get("location") or (extra.get("availability_zone")
                                         if "availability_zone" in self.family.node_keys else None)
        if name:
            return str(name)
        spec = self.family.keys.get("location")
        if spec is None or not spec.arg:
            return self.cloud.get("location") or None
        return None

    def _objects(self, name: str, value):
        """``value`` as argument ``name`` takes it: the driver's objects for a parameter whose
        type is a class (found by id or name through its ``ex_list_*`` method), else as is."""
        param = self.info.create.get(name)
        if param is None or not param.of or param.type not in ("object", "list"):
            return value
        lister = lister_for(self.info, name)
        if lister is None:
            return value
        wanted = value if isinstance(value, list) else [value]
        found = []
        for item in wanted:
            key = (lister, str(item))
            if key not in self._found:
                items = self.read(f"listing for {name}", getattr(self.driver, lister))
                for candidate in items:
                    for ident in (getattr(candidate, "id", None), getattr(candidate, "name", None)):
                        if ident is not None:
                            self._found.setdefault((lister, str(ident)), candidate)
            if key not in self._found:
                raise CloudError(f"{name}: '{item}' does not exist on this cloud ({lister} lists no "
                                 "such id or name)")
            found.append(self._found[key])
        return found if param.type == "list" else found[0]

    def _create_keys(self, node) -> dict:
        """The keys of the node's cluster/kind sections that name ``create_node`` arguments."""
        keys = dict(node.extra.get("create") or {})
        secret = node.extra.get("create_secrets") or {}
        if secret and self.config is not None:
            template = self.config.templates.get(secret.get("template"))
            kind = template.kinds.get(node.kind) if template else None
            for name in secret.get("keys", ()):
                if kind is None or name not in kind.create_secrets:
                    raise ConfigurationError(
                        f"{name}: the secret value of this create_node argument comes from the "
                        f"configuration, and template '{secret.get('template')}' no longer gives it")
                keys[name] = kind.create_secrets[name]
        return keys

    def _cloud_create_args(self) -> dict:
        """The cloud section's keys that become create_node arguments (``create`` in the mapping)."""
        found = {}
        for spec in self.family.keys.values():
            if spec.create and self.cloud.get(spec.name) not in (None, ""):
                arg = spec.create if isinstance(spec.create, str) else spec.create.get("arg")
                found[arg] = self.cloud[spec.name]
        return found

    # -- create / destroy ------------------------------------------------------------

    def create_arguments(self, node, *, public_key: str, key_name: str, client_token: str,
                         extra: dict) -> dict:
        """The ``create_node`` keyword arguments for one node (the same code for every cloud)."""
        plan = self.plan
        image = self.image(node.image_id)
        kwargs = {"name": cloud_name(self.cluster_name, node.name), "image": image}
        if "size" in self.info.create or self.info.create_kwargs:
            kwargs["size"] = self.size(node.flavor)
        location = self._location_name(node) if plan.location_arg else None
        if location:
            kwargs[plan.location_arg] = self.location(location) if plan.location_object else location
        userdata = node.image_userdata or None
        delivery = plan.delivery
        if delivery is not None and delivery.way == "user_data":
            from elasticcluster import cloud_init

            userdata = cloud_init.with_ssh_key(node.image_userdata, public_key, node.image_user)
        wanted = {
            "userdata": userdata,
            "security_groups": [node.security_group] if node.security_group else None,
            "tags": {TAG_CLUSTER: self.tag_value(self.cluster_name), TAG_NODE: self.tag_value(node.name)},
            "client_token": client_token,
            "network_ids": node.network_ids or None,
        }
        for purpose, value in wanted.items():
            mapped = self.create_arg(purpose)
            if mapped is None or value is None:
                continue
            arg, options = mapped
            if purpose in ("security_groups", "network_ids"):
                value = self._resolve(options, value) if options.get("resolve") else self._objects(arg, value)
            if purpose == "tags":
                value = self._tags_as(arg, value)
            _put(kwargs, arg, value)
        if delivery is not None:
            self._deliver(kwargs, delivery, node, public_key, key_name)
        kwargs.update(plan.start)
        cloud_keys = {spec.name: spec.create for spec in self.family.keys.values() if spec.create}
        self._mapped(kwargs, cloud_keys, self.cloud, image)
        self._mapped(kwargs, self.family.node_keys, {k: v for k, v in node.extra.items() if k != "create"},
                     image)
        for name, value in self._create_keys(node).items():
            kwargs[name] = self._objects(name, value)
        kwargs.update({k: parse_scalar(v) for k, v in extra.items()})
        self._groups_in_subnet(kwargs)
        return kwargs

    def _tags_as(self, arg: str, tags: dict):
        """Our tags as ``arg`` takes them: a dict, or ``key=value`` items for a list."""
        param = self.info.create.get(arg)
        if param is not None and param.type == "list":
            return [f"{key}={value}" for key, value in tags.items()]
        return tags

    def _deliver(self, kwargs: dict, delivery, node, public_key: str, key_name: str) -> None:
        """Put the login's SSH key where ``delivery`` says (user data is done with the userdata)."""
        if delivery.way == "auth":
            from libcloud.compute.base import NodeAuthSSHKey

            kwargs["auth"] = NodeAuthSSHKey(public_key)
        elif delivery.way == "key_name":
            _put(kwargs, delivery.arg, key_name)
        elif delivery.way == "key_ids":
            _put(kwargs, delivery.arg, [self.key_pair_id(key_name)])
        elif delivery.way == "public_keys":
            _put(kwargs, delivery.arg, [public_key])
        elif delivery.way == "login_key":
            _put(kwargs, delivery.arg, f"{node.image_user}:{public_key}")

    def _mapped(self, kwargs: dict, specs: dict, values: dict, image) -> None:
        """Keys that a mapping file turns into create_node arguments (``[node_keys]``, and
        ``create`` of cloud keys): a name, or a table with ``arg``, ``values`` (value map),
        ``ignore`` (values meaning "not set"), ``template`` (``$key``/``$image.x`` filled in),
        ``also`` (arguments set with it), ``same_as`` (a key that goes with another one's
        template) and ``resolve = "subnet_of"``; ``refused`` keys never get here."""
        context = {"image": image, **values}
        done = set()
        for key, spec in specs.items():
            if key == "location" or (isinstance(spec, dict) and spec.get("same_as") == "location"):
                continue
            spec = {"arg": spec} if isinstance(spec, str) else dict(spec)
            if spec.get("refused"):
                continue
            if spec.get("same_as"):
                key, spec = spec["same_as"], dict(specs[spec["same_as"]])
            group = [key] + [k for k, s in specs.items() if isinstance(s, dict) and s.get("same_as") == key]
            if key in done or all(values.get(k) in (None, "") for k in group):
                continue
            done.add(key)
            value = values.get(key)
            if value in spec.get("ignore", ()):
                continue
            if "values" in spec:
                value = spec["values"].get(str(value).lower(), value)
            if "template" in spec:
                value = _fill(spec["template"], context)
            if spec.get("resolve") == "subnet_of":
                value = self._subnet_of(spec, str(value), kwargs)
                if value is None:
                    continue
            _put(kwargs, spec["arg"], value)
            if value:
                for arg, extra_value in spec.get("also", {}).items():
                    _put(kwargs, arg, extra_value)

    def _groups_in_subnet(self, kwargs: dict) -> None:
        """``[create] security_groups`` with ``in_subnet``: with a subnet, the groups go by id
        (the groups of those names in the subnet's network), as EC2 wants them."""
        mapped = self.create_arg("security_groups")
        spec = mapped[1].get("in_subnet") if mapped else None
        subnet = kwargs.get(spec["subnet"]) if spec else None
        names = kwargs.get(mapped[0]) if mapped else None
        if not spec or subnet is None or not names:
            return
        network = (getattr(subnet, "extra", None) or {}).get(spec.get("field", "vpc_id"))
        groups = self.read("listing security groups", getattr(self.driver, spec["list"]),
                           filters={spec["filter"]: network})
        ids = {getattr(g, "name", None): g.id for g in groups}
        missing = [n for n in names if n not in ids]
        if missing:
            raise CloudError(f"security group {', '.join(missing)} does not exist in network {network}")
        kwargs.pop(mapped[0])
        kwargs[spec["arg"]] = [ids[n] for n in names]

    def _subnet_of(self, spec: dict, network: str, kwargs: dict):
        """A subnet of ``network`` (id or name) for ``spec['arg']``, unless network_ids chose one."""
        if kwargs.get(spec["arg"]) is not None:
            return None
        network_id = self.network_id()
        field = spec.get("field", "vpc_id")
        subnets = [s for s in self.read("listing subnets", getattr(self.driver, spec["subnets"]))
                   if (getattr(s, "extra", None) or {}).get(field) == network_id]
        if not subnets:
            raise CloudError(f"vpc '{network}' has no subnet to start nodes in")
        location = kwargs.get("location")
        zone = getattr(getattr(location, "availability_zone", None), "name", None) or getattr(
            location, "name", None)
        in_zone = [s for s in subnets if (s.extra or {}).get("zone") == zone] if zone else []
        return sorted(in_zone or subnets, key=lambda s: s.id)[0]

    def create(self, node, kwargs: dict):
        return self.call(f"creating {node.name}", self.driver.create_node, **kwargs)

    def destroy(self, instance) -> None:
        """Terminate ``instance``; one that no longer exists counts as terminated (also when
        the cloud's error cannot be read: the instance is then looked up by id)."""
        try:
            self.read(f"terminating {instance.id}", self.driver.destroy_node, instance)
        except CloudError as err:
            if _NOT_FOUND.search(str(err)) or self._gone(instance.id):
                return
            raise

    def _gone(self, instance_id: str) -> bool:
        """Whether the cloud says ``instance_id`` no longer runs (False if it cannot say)."""
        if not self.family.listing.get("by_ids"):
            return False
        try:
            found = self.list_instances(known_ids=[instance_id])
        except CloudError:
            return False
        return all(str(i.state).lower() in ("terminated", "missing") for i in found if i.id == instance_id)

    def stop(self, instance) -> None:
        self.read(f"stopping {instance.id}", self.driver.stop_node, instance)

    def start(self, instance) -> None:
        self.read(f"starting {instance.id}", self.driver.start_node, instance)

    def floating_ip(self, instance) -> str | None:
        """Allocate and attach a floating IP (``request_floating_ip``); its address."""
        spec = self.family.floating_ip
        if not spec:
            log.warning("request_floating_ip: this cloud's mapping has no floating IP support")
            return None
        ip = self._invoke(spec["allocate"], pool=self.cloud.get("floating_network_id"))
        self._invoke(spec["attach"], node=instance, ip=ip)
        return _address(ip)

    def release_floating_ip(self, address: str) -> None:
        """Give back the floating IP ``address`` that ``floating_ip`` allocated (``[floating_ip]
        release``, found through ``list``); one the cloud no longer has counts as released."""
        spec = self.family.floating_ip
        if not spec or not spec.get("release"):
            return
        listed = self._invoke(spec["list"]) if spec.get("list") else [address]
        ip = next((i for i in listed if _address(i) == address), None)
        if ip is None:
            return
        if spec.get("detach"):
            try:
                self._invoke(spec["detach"], ip=ip)
            except CloudError as err:
                log.debug("detaching floating IP %s: %s", address, err)
        try:
            self._invoke(spec["release"], ip=ip)
        except CloudError as err:
            if not _NOT_FOUND.search(str(err)):
                raise


    # -- images (bake) ---------------------------------------------------------------

    def create_image(self, instance, name: str, description: str = ""):
        """An image of ``instance`` (libcloud's ``create_image``, with the mapping's ``[images]
        create`` arguments). Sent once: a call whose answer was lost is not sent again."""
        method = self.driver.create_image
        kwargs = dict(self.family.images.get("create") or {})
        try:
            if description and "description" in inspect.signature(method).parameters:
                kwargs["description"] = description
        except (TypeError, ValueError):
            pass
        try:
            return self.call(f"making image {name}", method, instance, name, **kwargs)
        except NotImplementedError:
            raise CloudError(f"this cloud's driver ({type(self.driver).__name__}) cannot make an image of "
                             "a node (libcloud's create_image): bake is not available on it") from None

    def tag_image(self, image, tags: dict) -> None:
        """Tag ``image`` as the mapping's ``[images] tag`` says (a failure is only a warning: the
        image is recorded in the cluster's state all the same)."""
        spec = self.family.images.get("tag")
        if not spec:
            return
        try:
            self._invoke(spec, retry=True, image=image, tags=dict(tags))
        except CloudError as err:
            log.warning("could not tag image %s (%s)", image.id, err)

    def _lookup_image(self, image_id: str):
        """The cloud's image ``image_id``, or None when it is gone (not cached)."""
        def get():
            try:
                return self.driver.get_image(image_id)
            except IndexError:  # EC2's get_image of an id its listing no longer has
                return None

        try:
            return self.read(f"looking up image {image_id}", get)
        except CloudError as err:
            if _NOT_FOUND.search(str(err)):
                return None
            raise

    def wait_image_ready(self, image_id: str, timeout: float) -> None:
        """Wait until the cloud says image ``image_id`` is made (its ``state``/``status``)."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                image = self._lookup_image(image_id)
            except NotImplementedError:
                return  # the driver cannot say: create_image returned, that is all we know
            state = ""
            if image is not None:
                extra = image.extra or {}
                state = str(extra.get("state") or extra.get("status") or "").lower()
                if state in IMAGE_FAILED:
                    raise CloudError(f"the cloud could not make image {image_id} (its state: {state})")
                if state not in IMAGE_PENDING:
                    return
            if time.monotonic() >= deadline:
                raise CloudError(f"image {image_id} is not ready after {timeout:.0f}s (state: "
                                 f"{state or 'not listed yet'})")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)

    def delete_image(self, image_id: str) -> None:
        """Delete image ``image_id`` and the snapshots it holds (``[images] snapshots`` and
        ``delete_snapshot``); one that no longer exists counts as deleted."""
        from libcloud.compute.base import NodeImage

        try:
            image = self._lookup_image(image_id)
        except NotImplementedError:
            image = NodeImage(id=image_id, name=image_id, driver=self.driver)
        if image is None:
            return
        snapshots = _collect(image.extra or {}, self.family.images.get("snapshots", ""))
        try:
            self.read(f"deleting image {image_id}", self.driver.delete_image, image)
        except CloudError:
            if self._lookup_image(image_id) is not None:  # a retry after a lost answer may fail
                raise
        spec = self.family.images.get("delete_snapshot")
        if spec and snapshots:
            from libcloud.compute.base import VolumeSnapshot

            for snapshot in snapshots:
                try:
                    self._invoke(spec, retry=True, snapshot=VolumeSnapshot(id=snapshot, driver=self.driver))
                except CloudError as err:
                    if not _NOT_FOUND.search(str(err)):
                        raise CloudError(f"image {image_id} is deleted but not its snapshot {snapshot}: "
                                         f"{err}") from err


#: states of an image that the cloud is still making, and of one it could not make
IMAGE_PENDING = frozenset({"pending", "saving", "queued", "creating", "importing", "uploading"})
IMAGE_FAILED = frozenset({"failed", "error", "killed", "deleted", "invalid", "deregistered"})


def _collect(data, path: str) -> list[str]:
    """The values at ``path`` (``a.*.b``: ``*`` for every item of a list) in nested dicts/lists."""
    if not path:
        return []
    found = [data]
    for part in path.split("."):
        nxt = []
        for value in found:
            if part == "*" and isinstance(value, (list, tuple)):
                nxt += list(value)
            elif isinstance(value, dict) and value.get(part) not in (None, ""):
                nxt.append(value[part])
        found = nxt
    return [str(v) for v in found if v not in (None, "", "None")]


def _address(ip) -> str:
    return getattr(ip, "ip", None) or getattr(ip, "ip_address", None) or str(ip)


def _put(kwargs: dict, arg: str, value) -> None:
    """``kwargs[arg] = value``; ``arg`` = ``name.item`` sets an item of a dict argument."""
    arg, _, item = arg.partition(".")
    if item:
        kwargs.setdefault(arg, {})[item] = value
    else:
        kwargs[arg] = value


def _fill(template, context: dict):
    """``template`` (lists, tables, strings) with ``$name`` / ``$image.extra.x`` filled in from
    ``context``; table entries whose value is missing are left out."""
    if isinstance(template, list):
        return [_fill(item, context) for item in template]
    if isinstance(template, dict):
        filled = {key: _fill(value, context) for key, value in template.items()}
        return {key: value for key, value in filled.items() if value is not None}
    if isinstance(template, str) and template.startswith("$"):
        value = context
        for part in template[1:].split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, (list, tuple)) and part.isdigit():
                value = value[int(part)] if int(part) < len(value) else None
            else:
                value = getattr(value, part, None)
            if value is None:
                return None
        return value
    return template


def lister_for(info, name: str) -> str | None:
    """The driver method that lists the objects argument ``name`` takes (``ex_list_networks``
    for ``networks``, ``ex_list_projects`` for ``project``), or None."""
    base = name[3:] if name.startswith("ex_") else name
    for candidate in (base, base + "s", base.removesuffix("_ids") + "s", base.removesuffix("_id") + "s"):
        for method in (f"ex_list_{candidate}", f"list_{candidate}"):
            if method in info.lists or method in info.implements:
                return method
    return None


def provider_for(config, cloud_name: str, cluster_name: str | None = None) -> CloudProvider:
    """The CloudProvider of cloud section ``cloud_name`` for cluster ``cluster_name``."""
    return provider_of(config.cloud(cloud_name), cluster_name, config=config)


def provider_of(spec, cluster_name: str | None = None, config=None) -> CloudProvider:
    """The CloudProvider of a checked cloud section (``config.link.CloudSpec``); ``config``, when
    there is one, gives the values state files do not keep (secret create_node keys)."""
    driver = build_driver(spec.provider, spec.family, spec.values)
    return CloudProvider(driver, spec.family, spec.values, cluster_name,
                         factory=lambda: build_driver(spec.provider, spec.family, spec.values),
                         config=config, cloud_section=f"cloud/{spec.name}")
