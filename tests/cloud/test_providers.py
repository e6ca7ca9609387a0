"""Every libcloud cloud by config alone, and the seed's clouds through libcloud (issue 3, item 5).

1. A cloud section holding only ``provider = X`` is refused, for every compute
   provider of the installed libcloud, with a message that lists what X's
   driver takes (through the API, and for a few providers through the real
   CLI); unknown keys are refused the same way; ``driver = module:Class``
   registers a driver of our own.
2. The seed's ``google`` and ``openstack`` cloud sections drive libcloud's GCE
   and OpenStack drivers: the requests sent for a node create done through our
   code path (``lifecycle.prepare`` and ``lifecycle.run_instances``) are
   recorded and checked. The answers are libcloud's recorded responses, shipped
   in its wheel under ``libcloud/test/``, served in-process: no network (and
   the tests run in a private network namespace all the same).
3. The mapping of the seed's ``ec2_boto`` and ``openstack`` keys onto the
   libcloud constructors, and the seed's EC2 driver built without contacting
   the cloud.

"The seed's" examples are those of ``tests/data/seed10/cloud-section.md``, a
stand-in for section 4.2.2 of the 1.0 documentation written for these tests.
Where the 1.0 documentation itself lies beside the repository (../shared/seed,
on the development machines), the tests also run over its examples, and check
that ours say what it says; elsewhere those runs are skipped with a reason.
"""
from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from libcloud.compute.providers import DRIVERS, get_driver

from elasticcluster import lifecycle
from elasticcluster.cloud import (
    TAG_CLUSTER,
    TAG_NODE,
    build_driver,
    constructor_args,
    driver_class,
    provider_for,
)
from elasticcluster.cloud_catalog import mapped_families
from elasticcluster.conf import Configurator
from elasticcluster.config import load_config
from elasticcluster.exceptions import ConfigurationError
from elasticcluster.repository import DiskRepository, MemRepository
from elasticcluster.ssh_keys import read_public_key

REPO = Path(__file__).resolve().parents[2]
#: the seed's cloud sections (1.0 docs, 4.2.2) as written for these tests, with their examples
SEED_DOCS = REPO / "tests" / "data" / "seed10" / "cloud-section.md"
#: the 1.0 documentation itself: beside the repository on the development machines only
DOCS_10 = REPO.parent / "shared" / "seed" / "elasticcluster-1.0-docs.txt"
DOCS_10_ABSENT = ("elasticcluster 1.0 documentation not beside the repository (../shared/seed): "
                  "extra check skipped")


def docs_10(*values):
    """A parameter set for the 1.0 documentation itself: an extra check, skipped where it is absent."""
    return pytest.param(DOCS_10, *values, id="docs-1.0",
                        marks=pytest.mark.skipif(not DOCS_10.is_file(), reason=DOCS_10_ABSENT))


#: the docs whose examples a test runs over: ours, and the 1.0 documentation where it is present
DOCS = [pytest.param(SEED_DOCS, id="ours"), docs_10()]

PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc2ZWVkLWVsYXN0aWNjbHVzdGVyLXRlc3Qta2V5LTAx "
              "test@elasticcluster")
USERDATA = "touch /var/tmp/elasticcluster-was-here"

#: libcloud compute providers, as the config names them
LIBCLOUD_PROVIDERS = sorted(str(name) for name in DRIVERS)

#: providers that a drivers/*.toml mapping answers for, and the keys that mapping requires
MAPPED_REQUIRED = {
    "ec2": ["ec2_access_key", "ec2_secret_key"],
    "gce": ["gce_client_id", "gce_client_secret", "gce_project_id"],
    "openstack": ["auth_url", "username", "password", "project_name"],
    "azure_arm": ["subscription_id", "tenant_id", "client_id", "secret"],
    "azure": ["subscription_id", "tenant_id", "client_id", "secret"],
    "opennebula": ["endpoint", "username", "password"],
}


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_cloud_environment(home, monkeypatch):
    """A fresh HOME, and none of the environment variables that may stand for a cloud key."""
    for family in mapped_families().values():
        for spec in family.keys.values():
            for name in spec.env:
                monkeypatch.delenv(name, raising=False)


def seed_cloud_docs(docs: Path = SEED_DOCS) -> str:
    """Section 4.2.2 (cloud sections) of the seed's documentation: up to the next chapter (``## ``)."""
    text = docs.read_text()
    start = text.index("### 4.2.2 Cloud Section")
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def seed_example(name: str, docs: Path = SEED_DOCS) -> str:
    """The seed's example section ``[cloud/NAME]`` (4.2.2), as written there."""
    match = re.search(r"```\n(\[cloud/" + re.escape(name) + r"\]\n.*?)```", seed_cloud_docs(docs), re.S)
    assert match, f"section 4.2.2 of {docs.name} has no [cloud/{name}] example"
    return match.group(1)


def fill(section: str, **values: str) -> str:
    """``section`` with the values of the keys given replaced (the seed has placeholders)."""
    out = []
    for line in section.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in values:
            line = f"{key}={values.pop(key)}"
        out.append(line)
    assert not values, f"keys not in the seed's section: {sorted(values)}"
    return "\n".join(out) + "\n"


def write_config(tmp_path: Path, cloud: str, *, cloud_name: str = "x", cluster: str = "c",
                 image_id: str = "ami-00000048", flavor: str = "m1.small", compute: int = 0,
                 cluster_extra: str = "") -> Path:
    """A config file: ``cloud`` (a whole [cloud/...] section) and a valid login, setup, cluster."""
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "id_ed25519").write_text("not used: no SSH in these tests\n")
    (keys / "id_ed25519").chmod(0o600)
    (keys / "id_ed25519.pub").write_text(PUBLIC_KEY + "\n")
    text = f"""\
{cloud.strip()}

[login/ubuntu]
image_user = ubuntu
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-test
user_key_private = {keys}/id_ed25519
user_key_public = {keys}/id_ed25519.pub

[setup/slurm]
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/{cluster}]
cloud = {cloud_name}
login = ubuntu
setup_provider = slurm
image_id = {image_id}
flavor = {flavor}
security_group = default
frontend_nodes = 1
compute_nodes = {compute}
ssh_to = frontend
{cluster_extra}
"""
    path = tmp_path / "config"
    path.write_text(text)
    path.chmod(0o600)
    return path


def driver_parameters(cls) -> tuple[list[str], list[str]]:
    """(required, optional) named parameters of the first ``__init__`` in ``cls``'s MRO that names any."""
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        params = [p for p in list(inspect.signature(init).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if params:
            return ([p.name for p in params if p.default is p.empty],
                    [p.name for p in params if p.default is not p.empty])
    return [], []


# -- our stand-in for the 1.0 docs, against the 1.0 docs themselves (an extra check) --------------


def _documented(docs: str) -> set[str]:
    """The keys section 4.2.2 describes, one per line: `key`, `key:` or key (1.0 writes ec2\\_url)."""
    return {m.replace("\\_", "_") for m in re.findall(r"^`?([a-z0-9\\_]+):?`?\s*$", docs, re.M)}


def _keys(section: str) -> dict[str, str | None]:
    """key -> value of ``provider`` (the others' values are placeholders) of an example section."""
    pairs = [line.split("=", 1) for line in section.splitlines()[1:] if "=" in line]
    return {key.strip(): value.strip() if key.strip() == "provider" else None for key, value in pairs}


@pytest.mark.skipif(not DOCS_10.is_file(), reason=DOCS_10_ABSENT)
def test_our_seed_docs_say_what_the_10_docs_say():
    ours, theirs = seed_cloud_docs(), seed_cloud_docs(DOCS_10)
    assert {"provider", "ec2_url", "gce_client_id", "auth_url", "request_floating_ip"} <= _documented(ours)
    assert _documented(ours) == _documented(theirs)
    # the examples of both have the same keys, and the same provider
    for name in ("hobbes", "amazon-us-east-1", "google"):
        assert _keys(seed_example(name)) == _keys(seed_example(name, DOCS_10)), name
    # 1.0 has no OpenStack example: ours uses the keys it documents for openstack
    assert set(_keys(seed_example("openstack"))) <= _documented(theirs)


# -- 1. every libcloud provider by config alone ----------------------------------------------


def test_every_libcloud_provider_is_walked():
    assert len(LIBCLOUD_PROVIDERS) > 40  # libcloud 3.x ships about 50 compute drivers
    assert {"ec2", "gce", "openstack", "azure_arm", "digitalocean", "linode", "vultr"} <= set(LIBCLOUD_PROVIDERS)


def concrete(cls):
    """The class libcloud's constructor makes for ``cls`` (some pick one by API version in
    ``__new__``: DigitalOcean, Linode, Vultr...), without contacting a cloud."""
    if getattr(cls, "__new__", object.__new__) is object.__new__:
        return cls
    try:
        return type(cls.__new__(cls, "a-key"))
    except Exception:  # noqa: BLE001
        return cls


@pytest.mark.parametrize("provider", LIBCLOUD_PROVIDERS)
def test_provider_alone_is_refused_listing_what_its_driver_takes(provider, tmp_path):
    path = write_config(tmp_path, f"[cloud/x]\nprovider = {provider}\n")
    config = load_config(path)
    with pytest.raises(ConfigurationError) as caught:
        provider_for(config, "x", "c")
    message = str(caught.value)
    for wrong in ("Traceback", "ImportError", "No module named", "is not installed", "has no such driver"):
        assert wrong not in message, message
    # the section is checked when the configuration loads: the template is skipped there
    assert message.startswith("[cloud/x] has errors"), message
    assert "c" in config.skipped and "c" not in config.templates
    # building the driver needs the constructor's problems fixed; starting nodes needs all fixed
    assert caught.value.problems and set(caught.value.problems) <= set(config.skipped["c"])
    if provider in mapped_families():
        # a mapping file (drivers/*.toml) checks the section: cerberus names each missing key
        assert provider in MAPPED_REQUIRED, f"add the keys that drivers/*.toml requires for {provider}"
        for key in MAPPED_REQUIRED[provider]:
            assert re.search(rf"\[cloud/x\]: required key '{key}' is missing; expected .+", message), message
        return
    # pass-through: the section's keys are the driver's constructor parameters, each missing one
    # named with the file and line of the section
    cls = concrete(get_driver(provider))
    required, optional = driver_parameters(cls)
    takes = f"{cls.__name__} takes: required {', '.join(required) or 'none'}; optional "
    for name in required:
        assert f"{path}:1: [cloud/x]: required key '{name}' is missing; {takes}" in message, message
    if not required:
        assert f"{path}:1: [cloud/x]: no settings for provider {provider} (credentials or endpoint); " \
               f"{takes}" in message, message
    listed_optional = message.split(takes, 1)[1].split("\n")[0].split(", ")
    assert set(optional) <= set(listed_optional), message


@pytest.mark.parametrize("provider", ["digitalocean", "linode", "vultr"])
def test_cli_start_refuses_a_provider_alone_listing_its_parameters(provider, tmp_path, cli):
    path = write_config(tmp_path, f"[cloud/x]\nprovider = {provider}\n")
    storage = tmp_path / "storage"
    result = cli("-c", str(path), "-s", str(storage), "start", "c")
    assert result.returncode == 2, result.output
    cls = concrete(get_driver(provider))
    required, optional = driver_parameters(cls)
    assert required, f"{provider}'s driver has required parameters"
    for name in required:
        assert f"{path}:1: [cloud/x]: required key '{name}' is missing; " in result.output, result.output
    assert f"{cls.__name__} takes: required {', '.join(required)}; optional " in result.output
    assert all(name in result.output for name in optional)
    assert "Traceback" not in result.output
    assert DiskRepository(storage).get_all() == []  # nothing recorded: nothing was started


def test_unknown_key_of_a_pass_through_provider_is_refused_listing_the_parameters(tmp_path):
    path = write_config(tmp_path, "[cloud/x]\nprovider = digitalocean\nkey = x\nbogus = 1\nlocation = nyc1\n")
    config = load_config(path)
    with pytest.raises(ConfigurationError) as caught:
        provider_for(config, "x", "c")
    message = str(caught.value)
    required, optional = driver_parameters(concrete(get_driver("digitalocean")))
    assert f"{path}:4: [cloud/x] bogus: unknown key 'bogus' for provider digitalocean; " in message, message
    assert "missing" not in message
    assert f"DigitalOcean_v2_NodeDriver takes: required {', '.join(required)}; optional " in message
    assert all(name in message for name in optional)
    assert len(caught.value.problems) == 1, caught.value.problems


def test_driver_key_registers_a_class_of_our_own(tmp_path, monkeypatch):
    import libcloud.compute.providers as providers

    from tests.cloud.data.custom_driver import TinyNodeDriver

    # registering changes libcloud's table of drivers: on a copy, for this test only
    monkeypatch.setattr(providers, "DRIVERS", dict(providers.DRIVERS))
    driver = "driver = tests.cloud.data.custom_driver:TinyNodeDriver"
    config = load_config(write_config(
        tmp_path, f"[cloud/x]\nprovider = tiny\n{driver}\napi_token = tok-123\nmax_nodes = 5\n",
        image_id="tiny-image", flavor="tiny-size", compute=1))
    provider = provider_for(config, "x", "c")
    assert type(provider.driver) is TinyNodeDriver
    assert (provider.driver.api_token, provider.driver.region, provider.driver.max_nodes) == ("tok-123", "here", 5)
    assert providers.get_driver("elasticcluster-tiny") is TinyNodeDriver

    # a node create through our code path reaches it, named and tagged
    cluster = Configurator(config, tmp_path / "storage", MemRepository()).create_cluster("c")
    nodes = cluster.get_all_nodes()
    lifecycle.prepare(provider, cluster, nodes, PUBLIC_KEY)
    outcome = lifecycle.run_instances(provider, cluster, nodes, public_key=PUBLIC_KEY, max_workers=2)
    assert not outcome.failed
    created = {n.name: n.extra["metadata"] for n in provider.driver.nodes}
    assert created == {"c-compute001": {TAG_CLUSTER: "c", TAG_NODE: "compute001"},
                       "c-frontend001": {TAG_CLUSTER: "c", TAG_NODE: "frontend001"}}

    # its parameters are what a missing key's message lists
    config = load_config(write_config(tmp_path, f"[cloud/x]\nprovider = tiny\n{driver}\nregion = there\n"))
    with pytest.raises(ConfigurationError) as caught:
        provider_for(config, "x", "c")
    assert "[cloud/x]: required key 'api_token' is missing; TinyNodeDriver takes: required api_token; " \
           "optional region, max_nodes" in str(caught.value)


def test_driver_key_naming_no_class_is_refused(tmp_path):
    config = load_config(write_config(
        tmp_path, "[cloud/x]\nprovider = tiny\ndriver = tests.cloud.data.custom_driver:NoSuchDriver\n"))
    with pytest.raises(ConfigurationError, match=r"driver = tests.cloud.data.custom_driver:NoSuchDriver: "
                                                 r"cannot load it .*expected package.module:NodeDriverClass"):
        provider_for(config, "x", "c")


# -- libcloud's recorded responses ---------------------------------------------------------------


def libcloud_tests():
    """Make libcloud's own test modules (shipped in its wheel) importable, for their recorded responses."""
    try:
        import requests_mock  # noqa: F401 (libcloud's MockHttp serves its answers through it)
    except ImportError:
        pytest.fail("these tests need requests-mock (a test dependency): pip install requests-mock")
    import libcloud.test

    try:
        import libcloud.test.secrets  # noqa: F401
    except ImportError:
        # the wheel ships only secrets.py-dist, the dummy credentials its test modules import
        dist = Path(libcloud.test.__file__).with_name("secrets.py-dist")
        loader = importlib.machinery.SourceFileLoader("libcloud.test.secrets", str(dist))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(module)
        sys.modules[loader.name] = module


@dataclass
class Sent:
    """One request a driver sent to a recorded-response mock."""

    host: str
    method: str
    url: str
    body: str | None
    headers: dict

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self):
        return json.loads(self.body)

    def header(self, name: str):
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def recording(base, sent: list[Sent], rewrite=None, **handlers):
    """A subclass of libcloud's mock ``base`` that records each request before answering it.

    ``rewrite`` maps our URL to the one the recorded answers are filed under
    (they were recorded for other names); ``handlers`` add answers.
    """
    def _get_request(self, method, url, body=None, headers=None):
        sent.append(Sent(str(self.host), method, url, body, dict(headers or {})))
        return base._get_request(self, method, rewrite(url) if rewrite else url, body, headers)

    return type(f"Recording{base.__name__}", (base,), {"__test__": False, "_get_request": _get_request,
                                                       **handlers})


def start_nodes(config, template: str, tmp_path):
    """Our code path for ``start --no-setup`` up to the create calls: prepare, run_instances."""
    cluster = Configurator(config, tmp_path / "storage", MemRepository()).create_cluster(template)
    provider = provider_for(config, cluster.cloud, cluster.name)
    public_key = read_public_key(cluster.user_key_public)
    nodes = cluster.get_all_nodes()
    lifecycle.prepare(provider, cluster, nodes, public_key)
    # one create call at a time: libcloud's MockHttp patches requests globally for each request,
    # which is not thread-safe (the parallel creates are tested against moto's server)
    outcome = lifecycle.run_instances(provider, cluster, nodes, public_key=public_key, max_workers=1)
    assert not outcome.failed, outcome.failed
    assert all(node.instance_id for node in cluster.get_all_nodes())
    return cluster, public_key


# -- 2. the seed's google section, through libcloud's GCE driver ----------------------------------

GCE_CLIENT_ID = "123456789012-seedclient.apps.googleusercontent.com"
GCE_CLIENT_SECRET = "seed-client-secret-Qx7"
GCE_PROJECT = "elasticcluster-seed-project"


@pytest.mark.parametrize("docs", DOCS)
def test_seed_google_section_creates_nodes_through_libcloud_gce(docs, tmp_path, monkeypatch, private_net):
    # libcloud's recorded responses, no network
    libcloud_tests()
    from libcloud.common.google import GoogleBaseAuthConnection, GoogleInstalledAppAuthConnection
    from libcloud.compute.drivers.gce import GCENodeDriver, GCEZone

    clock = vars(GCEZone)["_now"]
    from libcloud.test.common.test_google import STUB_IA_TOKEN, GoogleAuthMockHttp
    from libcloud.test.compute.test_gce import GCEMockHttp

    GCEZone._now = clock  # importing libcloud's test module gave GCEZone a fixed clock

    for key in ("gce_client_id", "gce_client_secret", "gce_project_id"):
        assert f"`{key}`" in seed_cloud_docs(docs)
    cloud = fill(seed_example("google", docs), gce_client_id=GCE_CLIENT_ID, gce_client_secret=GCE_CLIENT_SECRET,
                 gce_project_id=GCE_PROJECT)

    def rewrite(url):
        # the recorded answers are filed under project 'project_name' and instance 'node-name'
        url = url.replace(f"/projects/{GCE_PROJECT}", "/projects/project_name")
        return re.sub(r"/instances/gce-test-[a-z]+\d{3}", "/instances/node-name", url)

    sent: list[Sent] = []
    monkeypatch.setattr(GCENodeDriver.connectionCls, "conn_class", recording(GCEMockHttp, sent, rewrite))
    monkeypatch.setattr(GoogleBaseAuthConnection, "conn_class", recording(GoogleAuthMockHttp, sent))
    # the installed-application flow has a person sign in with a browser: the code they get back
    monkeypatch.setattr(GoogleInstalledAppAuthConnection, "get_code", lambda self: "code-from-the-browser")

    # a cluster name GCE takes neither as a label value nor as an instance name
    config = load_config(write_config(tmp_path, cloud, cloud_name="google", cluster="GCE.test",
                                      image_id="debian-7-wheezy-v20131120", flavor="n1-standard-1",
                                      compute=2, cluster_extra=f"image_userdata = {USERDATA}"))
    cluster, public_key = start_nodes(config, "GCE.test", tmp_path)

    # OAuth: the seed's client id and secret, once
    tokens = [s for s in sent if s.path == "/o/oauth2/token"]
    assert len(tokens) == 1, [s.url for s in sent]
    assert "accounts.google.com" in tokens[0].host and tokens[0].method == "POST"
    form = parse_qs(tokens[0].body)
    assert form["client_id"] == [GCE_CLIENT_ID] and form["client_secret"] == [GCE_CLIENT_SECRET]
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["code-from-the-browser"]
    # every API request carries the token that answer gave, and names the seed's project
    api = [s for s in sent if s not in tokens]
    assert api and all(s.header("Authorization") == f"Bearer {STUB_IA_TOKEN['access_token']}" for s in api)
    ours = [s for s in api if f"/compute/v1/projects/{GCE_PROJECT}/" in s.path]
    assert any(s.path == f"/compute/v1/projects/{GCE_PROJECT}/zones" for s in ours)

    # one create per node, in the default zone (the mapping's `zone` default)
    creates = [s for s in sent if s.method == "POST" and s is not tokens[0]]
    assert {s.path for s in creates} == {f"/compute/v1/projects/{GCE_PROJECT}/zones/us-central1-a/instances"}
    bodies = {s.json()["name"]: s.json() for s in creates}
    assert sorted(bodies) == ["gce-test-compute001", "gce-test-compute002", "gce-test-frontend001"]
    for name, body in bodies.items():
        node = name[len("gce-test-"):]
        assert body["machineType"].endswith("/zones/us-central1-a/machineTypes/n1-standard-1")
        boot = body["disks"][0]
        assert boot["boot"] is True
        assert boot["initializeParams"]["sourceImage"].endswith("/global/images/debian-7-wheezy-v20131120")
        assert body["labels"] == {TAG_CLUSTER: "gce-test", TAG_NODE: node}  # GCE's label rules
        metadata = {item["key"]: item["value"] for item in body["metadata"]["items"]}
        assert metadata == {"startup-script": USERDATA, "ssh-keys": f"ubuntu:{public_key}"}
    assert public_key == PUBLIC_KEY
    # and instances so labelled are found to be this cluster's (stop finds them from the cloud)
    from libcloud.compute.base import Node as CloudNode

    provider = provider_for(config, cluster.cloud, cluster.name)

    def instance(labels):
        return CloudNode(id="1", name="x", state=None, public_ips=[], private_ips=[], driver=None,
                         extra={"labels": labels})

    assert provider.node_name_of(instance({TAG_CLUSTER: "gce-test", TAG_NODE: "compute001"})) == "compute001"
    assert provider.node_name_of(instance({TAG_CLUSTER: "gce-test-2", TAG_NODE: "compute001"})) is None


# -- 2. the seed's openstack section, through libcloud's OpenStack driver -------------------------

OS_USER = "seed-user"
OS_PASSWORD = "seed-password-8r2"
OS_PROJECT = "seed-project"
KEYSTONE = "https://keystone.example.org:5000"

#: (auth_url, extra keys, Keystone API the request must use, region of the recorded catalog)
OPENSTACK_CASES = {
    # the seed's keys alone: Keystone v3 (drivers/openstack.toml's default)
    "seed-keys-v3": (KEYSTONE, "", "3", "regionOne"),
    # OS_AUTH_URL's usual form: the version at the end of auth_url picks the API
    "auth_url-v3": (KEYSTONE + "/v3", "", "3", "regionOne"),
    "auth_url-v2.0": (KEYSTONE + "/v2.0", "", "2", "RegionOne"),
    # identity_api_version = 2 for libcloud's recorded Keystone v2.0 answers
    "identity_api_version-2": (KEYSTONE, "identity_api_version = 2\n", "2", "RegionOne"),
}


def _keystone_v3_answer(self, method, url, body, headers):
    """libcloud's recorded Keystone v3 token, made current and with its compute service named 'nova'
    (as real catalogs have it; libcloud's compute connection looks for that name), on example.org."""
    from libcloud.test.file_fixtures import ComputeFileFixtures

    text = ComputeFileFixtures("openstack").load("_v3__auth.json")
    text = re.sub(r"//(?:\d+\.\d+\.\d+\.\d+|controller)(?=[:/])", "//cloud.example.org", text)
    token = json.loads(text)
    token["token"]["expires_at"] = "2999-01-01T00:00:00.000000Z"
    for service in token["token"]["catalog"]:
        if service["type"] == "compute":
            service["name"] = "nova"
    return (201, json.dumps(token), {"content-type": "application/json",
                                     "x-subject-token": "seed-v3-token-0001"}, "Created")


@pytest.mark.parametrize("case", sorted(OPENSTACK_CASES))
def test_seed_openstack_section_creates_nodes_through_libcloud_openstack(case, tmp_path, monkeypatch,
                                                                         private_net):
    # libcloud's recorded responses, no network
    libcloud_tests()
    import libcloud.compute.drivers.openstack as openstack
    from libcloud.test.compute.test_openstack import OpenStack_2_0_MockHttp

    auth_url, extra, version, region = OPENSTACK_CASES[case]
    for key in ("auth_url", "username", "password", "project_name", "region_name"):
        assert f"`{key}" in seed_cloud_docs()
    # (the 1.0 documentation has no [cloud/openstack] example: test_the_10_docs_document_... checks its keys)
    cloud = fill(seed_example("openstack"), auth_url=auth_url, username=OS_USER, password=OS_PASSWORD,
                 project_name=OS_PROJECT, region_name=region) + extra

    def rewrite(url):
        # the recorded compute answers are filed under tenant 1337
        return url.replace("/v2/9c4693dce56b493b9b83197d900f7fba/", "/v2/1337/")

    sent: list[Sent] = []
    mock = recording(OpenStack_2_0_MockHttp, sent, rewrite, _v3_auth_tokens=_keystone_v3_answer)
    # every connection class of libcloud's OpenStack drivers (Keystone's takes its parent's)
    for name in dir(openstack):
        klass = getattr(openstack, name)
        if isinstance(klass, type) and issubclass(klass, openstack.OpenStackBaseConnection):
            monkeypatch.setattr(klass, "conn_class", mock)

    config = load_config(write_config(tmp_path, cloud, cloud_name="openstack", cluster="os-test",
                                      image_id="7", flavor="512 slice", compute=2,
                                      cluster_extra=f"image_userdata = {USERDATA}"))
    cluster, public_key = start_nodes(config, "os-test", tmp_path)

    # Keystone: a token request per driver (each worker thread has a driver of its own), all to
    # auth_url's host, with the seed's user, password and project
    tokens = [s for s in sent if s.path.endswith("/tokens")]
    assert 1 <= len(tokens) <= 2, [s.url for s in sent]
    assert all(t.host == KEYSTONE and t.method == "POST" and t.body == tokens[0].body for t in tokens)
    if version == "2":
        assert tokens[0].path == "/v2.0/tokens"
        assert tokens[0].json() == {"auth": {"passwordCredentials": {"username": OS_USER, "password": OS_PASSWORD},
                                             "tenantName": OS_PROJECT}}
        token, compute = "aaaaaaaaaaaa-bbb-cccccccccccccc", ("https://test_endpoint.com", "/v2/1337/")
    else:
        assert tokens[0].path == "/v3/auth/tokens"
        auth = tokens[0].json()["auth"]
        assert auth["identity"]["methods"] == ["password"]
        assert auth["identity"]["password"]["user"] == {"name": OS_USER, "password": OS_PASSWORD,
                                                        "domain": {"name": "Default"}}
        assert auth["scope"]["project"]["name"] == OS_PROJECT
        token = "seed-v3-token-0001"
        compute = ("http://cloud.example.org:8774", "/v2/9c4693dce56b493b9b83197d900f7fba/")
    # then the compute service of the catalog, in the region asked for, with that token
    api = [s for s in sent if s not in tokens]
    assert api and all(s.host == compute[0] and s.path.startswith(compute[1]) for s in api), \
        [(s.host, s.path) for s in api]
    assert all(s.header("X-Auth-Token") == token for s in api)

    # the key pair is imported under the login's name
    imports = [s for s in api if s.method == "POST" and s.path.endswith("/os-keypairs")]
    assert [s.json() for s in imports] == [{"keypair": {"name": "elasticcluster-test", "public_key": public_key}}]
    # one create per node
    creates = [s for s in api if s.method == "POST" and s.path.endswith("/servers")]
    bodies = {s.json()["server"]["name"]: s.json()["server"] for s in creates}
    assert sorted(bodies) == ["os-test-compute001", "os-test-compute002", "os-test-frontend001"]
    for name, server in bodies.items():
        assert server["imageRef"] == "7"
        assert str(server["flavorRef"]) == "2"  # "512 slice", found by name
        assert server["key_name"] == "elasticcluster-test"
        assert base64.b64decode(server["user_data"]).decode() == USERDATA
        assert server["metadata"] == {TAG_CLUSTER: "os-test", TAG_NODE: name[len("os-test-"):]}
        assert server["security_groups"] == [{"name": "default"}]
    # nothing else was created or changed
    assert {s.path.rsplit("/", 1)[1] for s in api if s.method != "GET"} == {"os-keypairs", "servers"}


# -- 3. the mapping of the seed's keys ---------------------------------------------------------


def _cloud(tmp_path, section: str, name: str):
    config = load_config(write_config(tmp_path, section, cloud_name=name))
    spec = config.cloud(name)
    return spec, driver_class(spec.provider, spec.family)


def hobbes_section(docs: Path) -> str:
    return fill(seed_example("hobbes", docs), ec2_access_key="AKIDSEEDHOBBES",
                ec2_secret_key="seed-secret-hobbes")


#: (docs, the host of their [cloud/hobbes] example)
HOBBES = [pytest.param(SEED_DOCS, "hobbes.example.org", id="ours"), docs_10("hobbes.gc3.uzh.ch")]


@pytest.mark.parametrize("docs, host", HOBBES)
def test_seed_hobbes_section_maps_onto_the_ec2_constructor(docs, host, tmp_path):
    spec, cls = _cloud(tmp_path, hobbes_section(docs), "hobbes")
    assert f"ec2_url=http://{host}:8773/services/Cloud" in seed_example("hobbes", docs)
    args, attributes = constructor_args(spec.provider, spec.family, spec.values, cls)
    assert args == {"key": "AKIDSEEDHOBBES", "secret": "seed-secret-hobbes", "host": host,
                    "port": 8773, "secure": False, "signature_version": "4"}
    # libcloud's EC2 driver takes AWS's regions only: 'nova' is set on the driver after construction
    assert attributes == {"path": "/services/Cloud", "region_name": "nova"}


@pytest.mark.parametrize("docs", DOCS)
def test_seed_amazon_section_maps_onto_the_ec2_constructor(docs, tmp_path):
    section = fill(seed_example("amazon-us-east-1", docs), ec2_access_key="AKIDSEEDAWS", ec2_secret_key="seed-secret-aws")
    spec, cls = _cloud(tmp_path, section, "amazon-us-east-1")
    args, attributes = constructor_args(spec.provider, spec.family, spec.values, cls)
    assert args == {"key": "AKIDSEEDAWS", "secret": "seed-secret-aws", "region": "us-east-1",
                    "host": "ec2.us-east-1.amazonaws.com", "secure": True, "signature_version": "4"}
    assert attributes == {}


@pytest.mark.parametrize("auth_url, version, url, auth_version", [
    (KEYSTONE, "3", KEYSTONE, "3.x_password"),
    (KEYSTONE, "2", KEYSTONE, "2.0_password"),
    (KEYSTONE, "2.0", KEYSTONE, "2.0_password"),
    (KEYSTONE, None, KEYSTONE, "3.x_password"),
    (KEYSTONE + "/v3", None, KEYSTONE, "3.x_password"),
    (KEYSTONE + "/v2.0", None, KEYSTONE, "2.0_password"),
    (KEYSTONE + "/v2.0/", None, KEYSTONE, "2.0_password"),
    (KEYSTONE + "/v2.0", "3", KEYSTONE, "3.x_password"),  # the key given wins over the URL
    ("https://cloud.example.org/identity/v3", None, "https://cloud.example.org/identity", "3.x_password"),
])
def test_openstack_keys_map_onto_the_openstack_constructor(tmp_path, auth_url, version, url, auth_version):
    section = (f"[cloud/os]\nprovider = openstack\nauth_url = {auth_url}\nusername = u\npassword = p\n"
               f"project_name = proj\nregion_name = RegionOne\n"
               + (f"identity_api_version = {version}\n" if version else ""))
    spec, cls = _cloud(tmp_path, section, "os")
    args, attributes = constructor_args(spec.provider, spec.family, spec.values, cls)
    assert args == {"key": "u", "secret": "p", "ex_force_auth_url": url, "ex_tenant_name": "proj",
                    "ex_force_service_region": "RegionOne", "ex_force_auth_version": auth_version}
    assert attributes == {}


@pytest.mark.parametrize("docs, host", HOBBES)
def test_seed_hobbes_driver_is_built_without_contacting_the_cloud(docs, host, tmp_path, monkeypatch, private_net):
    libcloud_tests()
    from libcloud.compute.drivers.ec2 import EC2NodeDriver
    from libcloud.test.compute.test_ec2 import EC2MockHttp

    class Answers(EC2MockHttp):
        __test__ = False
        use_param = "Action"

        def _get_method_name(self, type, use_param, qs, path):
            return super()._get_method_name(type, use_param, qs, "")  # answers by Action, any path

    sent: list[Sent] = []
    monkeypatch.setattr(EC2NodeDriver.connectionCls, "conn_class", recording(Answers, sent))
    spec, _ = _cloud(tmp_path, hobbes_section(docs), "hobbes")
    driver = build_driver(spec.provider, spec.family, spec.values)
    assert type(driver) is EC2NodeDriver
    assert (driver.connection.host, driver.connection.port) == (host, 8773)
    assert not driver.connection.secure
    assert driver.path == "/services/Cloud"
    assert (driver.region_name, driver.signature_version) == ("nova", "4")
    assert sent == []  # building it sent nothing

    # its requests go there, signed for region 'nova'
    driver.list_nodes()
    assert parse_qs(urlsplit(sent[0].url).query)["Action"] == ["DescribeInstances"]
    for request in sent:
        assert request.host == f"http://{host}:8773" and request.path == "/services/Cloud"
        assert re.fullmatch(r"AWS4-HMAC-SHA256 Credential=AKIDSEEDHOBBES/\d{8}/nova/ec2/aws4_request, .*",
                            request.header("Authorization"))
