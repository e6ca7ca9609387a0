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
import re
import socket
import threading
from urllib.parse import urlsplit

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

#: our create parameters, and the ``create_node`` arguments that take them when
#: a family's mapping does not say (tried in order, used if the driver has them)
DEFAULT_CREATE_ARGS = {
    "key_name": ("ex_keyname", "ex_key_name"),
    "userdata": ("ex_userdata", "ex_user_data"),
    "security_groups": ("ex_security_groups",),
    "tags": ("ex_metadata", "ex_tags"),
    "client_token": ("ex_clienttoken", "ex_client_token"),
}

_QUOTA = re.compile(r"InstanceLimitExceeded|InsufficientInstanceCapacity|VcpuLimitExceeded|"
                    r"QuotaExceeded|Quota exceeded|QUOTA_EXCEEDED|quota|capacity|"
                    r"InsufficientAddressCapacity|MaxSpotInstanceCountExceeded", re.I)
_TRANSIENT = re.compile(r"RequestLimitExceeded|Throttl|ServiceUnavailable|InternalError|"
                        r"Unavailable|temporarily|try again|timed out|Connection reset|"
                        r"\b50[0234]\b|\b429\b", re.I)
_NOT_FOUND = re.compile(r"NotFound|not found|does not exist|No such|\b404\b", re.I)
_AUTH = re.compile(r"AuthFailure|InvalidClientTokenId|SignatureDoesNotMatch|Unauthorized|"
                   r"InvalidCreds|Forbidden|\b401\b|UnrecognizedClient", re.I)


def classify(error: BaseException) -> type[CloudError]:
    """The CloudError class that fits a driver exception."""
    from libcloud.common.exceptions import RateLimitReachedError
    from libcloud.common.types import InvalidCredsError, ServiceUnavailableError

    text = f"{type(error).__name__}: {error}"
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
    """A one-line description of a driver exception, without secrets (redaction is on top)."""
    text = str(error).strip() or type(error).__name__
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
    required: list[str] = []
    optional: list[str] = []
    first = True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            continue
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for param in named:
            if param.name in required or param.name in optional:
                continue
            if first and param.default is param.empty:
                required.append(param.name)
            else:
                optional.append(param.name)
        if named:
            first = False
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return required, optional


def _parameters_text(cls) -> str:
    required, optional = init_parameters(cls)
    return (f"{cls.__name__} takes: required {', '.join(required) or 'none'}; "
            f"optional {', '.join(optional) or 'none'}")


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
            if parts.port:
                args["port"] = parts.port
            if parts.path and parts.path != "/":
                attributes["path"] = parts.path
            continue
        args[spec.arg] = spec.values.get(str(value), value)
    return {**family.constructor, **implied, **args}, attributes


def _passthrough_args(provider: str, cloud: dict, cls) -> dict:
    required, optional = init_parameters(cls)
    accepted = set(required) | set(optional)
    given = {k: v for k, v in cloud.items() if k not in ("provider", "driver")}
    unknown = sorted(k for k in given if k not in accepted)
    missing = [k for k in required if k not in given]
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
    return {k: parse_scalar(v) for k, v in given.items()}


def parse_scalar(value):
    """'3' -> 3, '0.5' -> 0.5, 'yes'/'true' -> True, 'a,b' -> ['a', 'b'], else the string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*|-?\d*\.\d+", text):
        return float(text)
    if "," in text:
        return [parse_scalar(item) for item in text.split(",") if item.strip()]
    return text


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
                 factory=None):
        self._main_driver = driver
        #: makes one more driver: libcloud connections are not thread-safe (a connection keeps
        #: its last response), so each worker thread gets a driver of its own
        self._factory = factory
        self._local = threading.local()
        self.family = family
        self.cloud = cloud
        self.cluster_name = cluster_name
        self._images: dict[str, object] = {}
        self._sizes: dict[str, object] | None = None
        self._lock = threading.Lock()
        self._create_params = self._create_signature()

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

    def _create_signature(self) -> set[str] | None:
        try:
            params = inspect.signature(self.driver.create_node).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}

    def create_arg(self, purpose: str):
        """The mapping of one create parameter: (argument name, options) or None."""
        spec = self.family.create.get(purpose)
        if spec is None and (self.family.passthrough or not self.family.create):
            for candidate in DEFAULT_CREATE_ARGS.get(purpose, ()):
                if self._create_params is None or candidate in self._create_params:
                    spec = candidate
                    break
        if spec is None:
            return None
        if isinstance(spec, str):
            return spec, {}
        return spec["arg"], spec

    def check_extra_args(self, extra: dict) -> None:
        """Refuse ``ex_*`` keys that the driver's ``create_node`` does not take."""
        if self._create_params is None:
            return
        unknown = sorted(k for k in extra if k not in self._create_params)
        if unknown:
            takes = ", ".join(sorted(p for p in self._create_params if p != "self"))
            raise ConfigurationError(
                f"{', '.join(unknown)}: not a parameter of {type(self.driver).__name__}.create_node, "
                f"which takes: {takes}")

    # -- listing -----------------------------------------------------------------

    def tags_of(self, instance) -> dict:
        field = self.family.node_fields.get("tags", "tags")
        tags = (instance.extra or {}).get(field) or {}
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
        instances = self.call("listing the nodes", self.driver.list_nodes, **kwargs)
        mine = [i for i in instances if self.node_name_of(i) is not None]
        seen = {i.id for i in mine}
        missing = [i for i in dict.fromkeys(known_ids) if i and i not in seen]
        if missing and spec.get("by_ids"):
            for start in range(0, len(missing), 100):
                mine += self._by_ids(spec["by_ids"], missing[start:start + 100])
        return mine

    def _by_ids(self, argument: str, ids: list[str]) -> list:
        """Instances of ``ids`` (one call; one call each if the cloud refuses an unknown id)."""
        try:
            return list(self.call("looking nodes up", self.driver.list_nodes, **{argument: ids}))
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
        """Import ``public_key`` as ``name`` unless there; refuse a different key of that name."""
        from elasticcluster import ssh_keys

        if self.create_arg("key_name") is None:
            return
        existing = self._key_pair(name)
        if existing is None:
            log.info("importing SSH key pair '%s'", name)
            try:
                self.call(f"importing key pair '{name}'", self.driver.import_key_pair_from_string,
                          name, public_key)
            except CloudError as err:
                if "Duplicate" not in str(err) and "exists" not in str(err):
                    raise
            return
        same = ssh_keys.matches(public_key, getattr(existing, "fingerprint", None))
        if same is False:
            raise CloudError(
                f"a key pair named '{name}' already exists on the cloud with another key "
                f"(fingerprint {existing.fingerprint}); set user_key_name to a new name, or "
                "user_key_public/user_key_private to the key it holds")
        if same is None:
            log.warning("cannot check that key pair '%s' on the cloud holds %s (no fingerprint)",
                        name, "your public key")

    def _key_pair(self, name: str):
        """The cloud's key pair ``name``, or None (one listing call)."""
        try:
            pairs = self.call("listing key pairs", self.driver.list_key_pairs)
        except NotImplementedError:
            return None
        return next((pair for pair in pairs if pair.name == name), None)

    def ensure_security_group(self, name: str) -> None:
        spec = self.family.security_group
        if not spec or not name:
            return
        groups = self.call("listing security groups", getattr(self.driver, spec["list"]))
        names = {g if isinstance(g, str) else getattr(g, "name", None) for g in groups}
        if name in names:
            return
        log.info("creating security group '%s' with SSH open", name)
        group = self._invoke(spec["create"], name=name)
        self._invoke(spec["allow_ssh"], name=name, group=group)

    def _invoke(self, spec, **values):
        """Call ``{"call": method, "args": [...]}`` with ``$name`` placeholders filled in."""
        if isinstance(spec, str):
            spec = {"call": spec, "args": []}
        args = [values.get(a[1:]) if isinstance(a, str) and a.startswith("$") else a
                for a in spec.get("args", [])]
        return self.call(spec["call"], getattr(self.driver, spec["call"]), *args)

    def image(self, image_id: str):
        with self._lock:
            if image_id not in self._images:
                self._images[image_id] = self._find_image(image_id)
            return self._images[image_id]

    def _find_image(self, image_id: str):
        try:
            image = self.driver.get_image(image_id)
            if image is not None:
                return image
        except NotImplementedError:
            pass
        except Exception as err:
            kind = classify(err)
            if kind is not CloudError or _AUTH.search(str(err)):
                raise kind(f"looking up image '{image_id}': {describe(err)}") from err
        images = self.call("listing images", self.driver.list_images)
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
                sizes = self.call("listing flavors", self.driver.list_sizes)
                self._sizes = {s.id: s for s in sizes}
                self._sizes.update({s.name: s for s in sizes if s.name})
        if flavor in self._sizes:
            return self._sizes[flavor]
        close = difflib.get_close_matches(flavor, list(self._sizes), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else (
            f"; available: {', '.join(sorted(self._sizes)[:20])}" if self._sizes else "")
        raise CloudError(f"flavor '{flavor}' does not exist on this cloud{hint}")

    def _resolve(self, options: dict, values):
        """Map ids/names to the driver's objects (``resolve``/``by`` in the mapping)."""
        method = options.get("resolve")
        if not method:
            return values
        items = self.call(f"listing for {options['arg']}", getattr(self.driver, method))
        by = options.get("by", "id")
        found = []
        for value in values:
            match = [i for i in items if getattr(i, by, None) == value or getattr(i, "name", None) == value]
            if not match:
                raise CloudError(f"{options['arg']}: '{value}' does not exist on this cloud")
            found.append(match[0])
        return found[0] if options.get("single") else found

    # -- create / destroy ------------------------------------------------------------

    def create_arguments(self, node, *, public_key: str, key_name: str, client_token: str,
                         extra: dict) -> dict:
        """The ``create_node`` keyword arguments for one node (the same code for every cloud)."""
        from libcloud.compute.base import NodeAuthSSHKey

        kwargs = {"name": cloud_name(self.cluster_name, node.name),
                  "image": self.image(node.image_id), "size": self.size(node.flavor)}
        wanted = {
            "key_name": key_name,
            "userdata": node.image_userdata or None,
            "security_groups": [node.security_group] if node.security_group else None,
            "tags": {TAG_CLUSTER: self.tag_value(self.cluster_name), TAG_NODE: self.tag_value(node.name)},
            "client_token": client_token,
            "network_ids": node.network_ids or None,
            "login_key": f"{node.image_user}:{public_key}",
        }
        for purpose, value in wanted.items():
            mapped = self.create_arg(purpose)
            if mapped is None or value is None:
                continue
            arg, options = mapped
            if purpose in ("security_groups", "network_ids"):
                value = self._resolve(options, value)
            arg, _, item = arg.partition(".")
            if item:
                kwargs.setdefault(arg, {})[item] = value
            else:
                kwargs[arg] = value
        if self._create_params is None or "auth" in self._create_params:
            if self.create_arg("key_name") is None and self.create_arg("login_key") is None:
                kwargs["auth"] = NodeAuthSSHKey(public_key)
        kwargs.update({k: parse_scalar(v) for k, v in extra.items()})
        return kwargs

    def create(self, node, kwargs: dict):
        return self.call(f"creating {node.name}", self.driver.create_node, **kwargs)

    def destroy(self, instance) -> None:
        """Terminate ``instance``; one that no longer exists counts as terminated."""
        try:
            self.call(f"terminating {instance.id}", self.driver.destroy_node, instance)
        except CloudError as err:
            if not _NOT_FOUND.search(str(err)):
                raise

    def stop(self, instance) -> None:
        self.call(f"stopping {instance.id}", self.driver.stop_node, instance)

    def start(self, instance) -> None:
        self.call(f"starting {instance.id}", self.driver.start_node, instance)

    def floating_ip(self, instance) -> str | None:
        """Allocate and attach a floating IP (``request_floating_ip``); its address."""
        spec = self.family.floating_ip
        if not spec:
            log.warning("request_floating_ip: this cloud's mapping has no floating IP support")
            return None
        ip = self._invoke(spec["allocate"])
        self._invoke(spec["attach"], node=instance, ip=ip)
        return getattr(ip, "ip", None) or getattr(ip, "ip_address", None) or str(ip)


def provider_for(config, cloud_name: str, cluster_name: str | None = None) -> CloudProvider:
    """The CloudProvider of cloud section ``cloud_name`` for cluster ``cluster_name``."""
    return provider_of(config.cloud(cloud_name), cluster_name)


def provider_of(spec, cluster_name: str | None = None) -> CloudProvider:
    """The CloudProvider of a checked cloud section (``config.link.CloudSpec``)."""
    driver = build_driver(spec.provider, spec.family, spec.values)
    return CloudProvider(driver, spec.family, spec.values, cluster_name,
                         factory=lambda: build_driver(spec.provider, spec.family, spec.values))
