"""Any libcloud cloud by configuration alone, proven on libcloud's own recorded clouds (issue 10).

Nine providers that have no file in ``drivers/`` are driven through the real
command line: ``list-templates``, ``start --no-setup -p 1``, ``list-nodes -u``
and ``stop``, each against the recorded HTTP answers libcloud ships in its
wheel (``libcloud.test.compute.test_*`` MockHttp classes and
``libcloud/test/compute/fixtures/``, unedited). Each test asserts the exact
``create_node`` arguments our code passed (location, how the SSH key travels,
keys of the cluster section) and the create request the driver then sent.

How it runs: the CLI runs in this process (``elasticcluster.cli.main``), with
the MockHttp classes installed on the driver's connection classes, so every
HTTP request is answered in-process; a subprocess would need a sitecustomize
hook. The whole module also runs in a private network namespace
(``private_net``) in which every IPv4 address is local: the recorded nodes'
addresses lead to the test's own sshd (``sshd``), which is what the SSH wait
of ``start`` reaches. libcloud's MockHttp patches ``requests`` per request and
is not thread-safe, hence ``-p 1`` (one create call at a time).

Where a recorded cloud cannot answer a later call, the test says so and
asserts up to that call: libcloud recorded each answer for its own test, so
most of them never list the node their create call returned (a fixed id), and
some have no answer for deleting it. A MockHttp ``type`` is chosen per request
only where libcloud's own test chose one for that call (``routes``).
"""
from __future__ import annotations

import base64
import functools
import importlib
import json
import logging
import re
import xmlrpc.client
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.cloud.conftest import NOOP_PLAYBOOK
from tests.cloud.test_providers import Sent, libcloud_tests

pytestmark = pytest.mark.usefixtures("private_net")


@dataclass
class Recorded:
    """One of libcloud's recorded clouds, and a configuration a user of that cloud would write."""

    provider: str
    #: libcloud's test module and its MockHttp class
    module: str
    mock: str
    #: the keys of the [cloud/recorded] section
    cloud: str
    image: str
    flavor: str
    cluster_extra: str = ""
    #: (HTTP method, path pattern, MockHttp.type): the recorded answer libcloud's own test
    #: selects for that call (its tests set ``MockHttp.type`` before making it)
    routes: tuple = ()
    #: attributes of the MockHttp class that libcloud's test setUp sets
    mock_attributes: dict = field(default_factory=dict)
    #: whether the recorded cloud lists the node its create call answered (else: why not)
    lists_created: bool = True
    why: str = ""
    #: whether it answers deleting that node (else stop keeps the cluster, and --force forgets it)
    deletes_created: bool = True


RECORDED = {
    "vultr": Recorded(
        "vultr", "test_vultr_v2", "VultrMockHttpV2",
        cloud="key = vultr-api-key\nlocation = Amsterdam\n",
        image="CentOS 7 x64", flavor="vc2-1c-1gb",
        cluster_extra="ex_enable_ipv6 = yes\n"),
    "gandi": Recorded(
        "gandi", "test_gandi", "GandiMockHttp",
        cloud="key = gandi-api-key\nlocation = FR-SD2\n",
        image="GandiOS", flavor="1"),
    "cloudstack": Recorded(
        "cloudstack", "test_cloudstack", "CloudStackMockHttp",
        cloud="key = cs-api-key\nsecret = cs-secret-key\nhost = api.dummy.com\npath = /test/path\n"
              "location = Sydney\n",
        image="576", flavor="Compute Micro PRD",
        cluster_extra="ex_displayname = frontend\n",
        lists_created=False,
        why="its deployVirtualMachine answer is VM 2602, its listVirtualMachines answer lists 2600 and 2601"),
    "linode": Recorded(
        "linode", "test_linode_v4", "LinodeMockHttpV4",
        # ElastiCluster users write numbers as they come: api_version is text for the driver
        cloud="key = linode-token\napi_version = 4.0\nlocation = us-east\n",
        image="linode/ubuntu20.04", flavor="Linode 2GB",
        cluster_extra="root_pass = ${LINODE_ROOT_PASS}\nex_private_ip = yes\n",
        lists_created=False, deletes_created=False,
        why="its create answer is Linode 45501392, which neither its list nor its delete answers know"),
    "upcloud": Recorded(
        "upcloud", "test_upcloud", "UpcloudMockHttp",
        cloud="username = upcloud-user\npassword = upcloud-password\nlocation = fi-hel1\n",
        image="01000000-0000-4000-8000-000030060200", flavor="1xCPU-1GB",
        lists_created=False, deletes_created=False,
        why="its create answer is server 00814aac-..., its list answer holds 00f8c525-... only"),
    "equinixmetal": Recorded(
        "equinixmetal", "test_equinixmetal", "EquinixMetalMockHttp",
        cloud="key = metal-api-key\nlocation = Dallas\n",
        image="Ubuntu 14.04 LTS", flavor="baremetal_1",
        # the project libcloud's test creates devices in
        cluster_extra="ex_project_id = project-id\n",
        lists_created=False, deletes_created=False,
        why="its create answer is device 9f7eafab-..., not in any of its device lists"),
    "cloudsigma": Recorded(
        "cloudsigma", "test_cloudsigma_v2_0", "CloudSigmaMockHttp",
        cloud="key = cloudsigma-user\nsecret = cloudsigma-password\n",
        image="ubuntu-10.04-toMP", flavor="small-1",
        mock_attributes={"use_param": "do"},
        lists_created=False,
        why="its create answer is server 9de75ed6_fd33_..., its list answer has 9de75ed6-fd33-..."),
    "digitalocean": Recorded(
        "digitalocean", "test_digitalocean_v2", "DigitalOceanComputeMockHttp",
        cloud="key = do-api-token\nlocation = New York 1\n",
        image="14.04 x64", flavor="512mb",
        routes=(("POST", r"/v2/account/keys$", "CREATE"),),
        lists_created=False,
        why="libcloud recorded no droplet create: POST /v2/droplets is answered with the droplet list"),
    "brightbox": Recorded(
        "brightbox", "test_brightbox", "BrightboxMockHttp",
        cloud="key = brightbox-client\nsecret = brightbox-secret\nlocation = gb1-a\n",
        image="img-99q79", flavor="typ-4nssg",
        lists_created=False,
        why="its create answer accepts only the user data of libcloud's own test"),
}

#: the SSH key pair name of the login section
KEY_NAME = "elasticcluster-test"


def config_text(spec: Recorded, key) -> str:
    return f"""\
[cloud/recorded]
provider = {spec.provider}
{spec.cloud}
[login/root]
image_user = root
image_user_sudo = root
image_sudo = no
user_key_name = {KEY_NAME}
user_key_private = {key}
user_key_public = {key}.pub

[setup/noop]
playbook_path = {NOOP_PLAYBOOK}
frontend_groups = slurm_master

[cluster/c]
cloud = recorded
login = root
setup_provider = noop
image_id = {spec.image}
flavor = {spec.flavor}
frontend_nodes = 1
ssh_to = frontend
{"" if spec.lists_created else "startup_timeout = 2"}
{spec.cluster_extra}"""


@dataclass
class Cloud:
    """A recorded cloud installed on its driver's classes: what was sent to it, what create got."""

    spec: Recorded
    sent: list = field(default_factory=list)
    creates: list = field(default_factory=list)

    def requests(self, method: str, pattern: str) -> list[Sent]:
        return [s for s in self.sent if s.method == method and re.search(pattern, urlsplit(s.url).path)]


def install(spec: Recorded, monkeypatch) -> Cloud:
    """libcloud's MockHttp of ``spec`` on every connection class of its driver, recording each
    request; and a record of each create_node call (the real call, kwargs kept)."""
    libcloud_tests()
    from libcloud.compute.providers import get_driver

    module = importlib.import_module(f"libcloud.test.compute.{spec.module}")
    base = getattr(module, spec.mock)
    cloud = Cloud(spec)

    def _get_request(self, method, url, body=None, headers=None):
        self.type = next((kind for m, pattern, kind in spec.routes
                          if m == method and re.search(pattern, urlsplit(url).path)), None)
        cloud.sent.append(Sent(str(self.host), method, url, body, dict(headers or {})))
        return base._get_request(self, method, url, body, headers)

    mock = type(f"Recording{base.__name__}", (base,), {"__test__": False, "_get_request": _get_request,
                                                       **spec.mock_attributes})
    mock.type = None
    driver = get_driver(spec.provider)
    classes = {driver}
    if getattr(driver, "__new__", object.__new__) is not object.__new__:
        classes.add(type(driver.__new__(driver, "a-key")))
    for cls in classes:
        for klass in cls.__mro__:
            connection = klass.__dict__.get("connectionCls")
            if connection is not None:
                monkeypatch.setattr(connection, "conn_class", mock)
    if spec.provider == "brightbox":
        # libcloud's test setUp gives the connection a token instead of asking for one
        monkeypatch.setattr(driver.connectionCls, "token", "test", raising=False)
    if spec.provider == "cloudstack":
        monkeypatch.setattr(driver.connectionCls, "poll_interval", 0.0)
    concrete = max(classes, key=lambda c: len(c.__mro__))
    original = concrete.create_node

    @functools.wraps(original)
    def create_node(self, *args, **kwargs):
        assert not args, "elasticcluster passes create_node's arguments by name"
        cloud.creates.append(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(concrete, "create_node", create_node)
    return cloud


def shown(value):
    """A create_node argument as the assertions compare it: libcloud objects by class and id."""
    from libcloud.compute.base import NodeAuthSSHKey

    if isinstance(value, NodeAuthSSHKey):
        return ("NodeAuthSSHKey", value.pubkey)
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    from libcloud.compute.base import NodeImage, NodeLocation, NodeSize

    for base in (NodeImage, NodeSize, NodeLocation):
        if isinstance(value, base):
            return (base.__name__, str(value.id))
    if hasattr(value, "id") and not isinstance(value, (str, int, float, bool)):  # another of its objects
        return (type(value).__name__, str(value.id))
    return value


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli_here(home, tmp_path, capsys):
    """``elasticcluster -c CONFIG -s STORAGE ARGS`` in this process (so MockHttp answers it)."""
    from elasticcluster.cli import main

    config = tmp_path / "config"
    storage = tmp_path / "storage"

    def run(*args: str) -> Run:
        root = logging.getLogger()
        saved = root.handlers[:], root.level, logging.getLogger("elasticcluster").level
        capsys.readouterr()
        try:
            code = main(["-c", str(config), "-s", str(storage), *args])
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logging.getLogger("elasticcluster").setLevel(saved[2])
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    def write(text: str) -> None:
        config.write_text(text)
        config.chmod(0o600)

    run.write = write
    run.storage = storage
    return run


def public_key_of(key) -> str:
    return " ".join(key.with_suffix(".pub").read_text().split()[:3])


def remembered(cli_here) -> dict | None:
    """Cluster ``c`` as ``list-nodes --json`` shows it (None when it is not remembered)."""
    listed = cli_here("list-nodes", "c", "--json")
    if listed.code == 2 and "no cluster" in listed.err.lower():
        return None
    assert listed.code == 0, listed.output
    return json.loads(listed.out)["cluster"]


def stored_text(cli_here) -> str:
    """Everything elasticcluster keeps in its storage folder, as text."""
    return "".join(p.read_text(errors="replace") for p in cli_here.storage.rglob("*") if p.is_file())


# -- the create calls, provider by provider ---------------------------------------------------------


def expected_create(provider: str, public_key: str, cloud: Cloud) -> dict:
    """The exact create_node arguments for the frontend node of cluster ``c``."""
    tags = ["elasticcluster-cluster=c", "elasticcluster-node=frontend001"]
    common = {"name": "c-frontend001"}
    if provider == "vultr":
        # the key pair is imported (libcloud's recorded answer gives it id 123); by name, Amsterdam is ams
        return {**common, "image": ("NodeImage", "167"), "size": ("NodeSize", "vc2-1c-1gb"),
                "location": ("NodeLocation", "ams"), "ex_ssh_key_ids": ["123"], "ex_enable_ipv6": True}
    if provider == "gandi":
        return {**common, "image": ("NodeImage", "34198"), "size": ("NodeSize", "1"),
                "location": ("NodeLocation", "1"), "keypairs": [10]}
    if provider == "cloudstack":
        # a CloudStack node is created stopped unless asked (startvm): elasticcluster asks
        return {**common, "image": ("NodeImage", "576"), "size": ("NodeSize", "105"),
                "location": ("NodeLocation", "1"), "ex_keyname": KEY_NAME, "ex_start_vm": True,
                "ex_displayname": "frontend"}
    if provider == "linode":
        # the public key itself (ex_authorized_keys); our tags as key=value items of its tag list
        return {**common, "image": ("NodeImage", "linode/ubuntu20.04"), "size": ("NodeSize", "g6-standard-1"),
                "location": ("NodeLocation", "us-east"), "ex_authorized_keys": [public_key], "ex_tags": tags,
                "root_pass": "root-pass-from-the-environment", "ex_private_ip": True}
    if provider == "upcloud":
        return {**common, "image": ("NodeImage", "01000000-0000-4000-8000-000030060200"),
                "size": ("NodeSize", "1xCPU-1GB"), "location": ("NodeLocation", "fi-hel1"),
                "auth": ("NodeAuthSSHKey", public_key)}
    if provider == "equinixmetal":
        return {**common, "image": ("NodeImage", "ubuntu_14_04"), "size": ("NodeSize", "baremetal_1"),
                "location": ("NodeLocation", "d3d6b29f-042d-43b7-b3ce-0bf53d5754ca"),
                "cloud_init": "#cloud-config\nssh_authorized_keys:\n- " + public_key + "\ndisable_root: false\n",
                "ex_project_id": "project-id"}
    if provider == "cloudsigma":
        imported = cloud.requests("POST", r"/keypairs/$")
        assert len(imported) == 1
        return {**common, "image": ("NodeImage", "5236b9ee-f735-42fd-a236-17558f9e12d3"),
                "size": ("NodeSize", "small-1"), "public_keys": ["6d7db550-d1c5-4e3b-9c0a-e83f6a2b8244"],
                "ex_metadata": {"elasticcluster-cluster": "c", "elasticcluster-node": "frontend001"}}
    if provider == "digitalocean":
        return {**common, "image": ("NodeImage", "119192817"), "size": ("NodeSize", "512mb"),
                "location": ("NodeLocation", "nyc1"),
                # the id of libcloud's recorded answer to the key import (create_key_pair.json)
                "ex_ssh_key_ids": [7717]}
    if provider == "brightbox":
        return {**common, "image": ("NodeImage", "img-99q79"), "size": ("NodeSize", "typ-4nssg"),
                "location": ("NodeLocation", "zon-6mxqw"),
                "ex_userdata": "#cloud-config\nssh_authorized_keys:\n- " + public_key + "\ndisable_root: false\n"}
    raise AssertionError(provider)


def check_create_request(provider: str, cloud: Cloud, public_key: str) -> None:
    """The create request the driver sent carries the SSH key, location and keys asked for."""
    if provider == "vultr":
        [imported] = cloud.requests("POST", r"^/v2/ssh-keys$")
        assert json.loads(imported.body) == {"name": KEY_NAME, "ssh_key": public_key}
        [create] = cloud.requests("POST", r"^/v2/instances$")
        body = json.loads(create.body)
        assert {k: body[k] for k in ("label", "region", "plan", "os_id", "sshkey_id", "enable_ipv6")} == \
            {"label": "c-frontend001", "region": "ams", "plan": "vc2-1c-1gb", "os_id": "167",
             "sshkey_id": ["123"], "enable_ipv6": True}
    elif provider == "gandi":
        calls = [xmlrpc.client.loads(s.body) for s in cloud.requests("POST", r"^/xmlrpc/$")]
        [imported] = [params for params, method in calls if method == "hosting.ssh.create"]
        assert imported[1] == {"name": KEY_NAME, "value": public_key}
        [create] = [params for params, method in calls if method == "hosting.vm.create_from"]
        assert create[1]["hostname"] == "c-frontend001" and create[1]["keys"] == [10]
        assert create[1]["datacenter_id"] == 1 and create[3] == 34198
    elif provider == "cloudstack":
        deploys = [parse_qs(urlsplit(s.url).query) for s in cloud.sent
                   if "deployVirtualMachine" in parse_qs(urlsplit(s.url).query).get("command", [])]
        assert len(deploys) == 1
        assert {k: deploys[0][k] for k in ("keypair", "startvm", "zoneid", "templateid", "displayname")} == \
            {"keypair": [KEY_NAME], "startvm": ["True"], "zoneid": ["1"], "templateid": ["576"],
             "displayname": ["frontend"]}
        [registered] = [q for q in (parse_qs(urlsplit(s.url).query) for s in cloud.sent)
                        if q.get("command") == ["registerSSHKeyPair"]]
        assert registered["name"] == [KEY_NAME] and registered["publickey"] == [public_key]
    elif provider == "linode":
        [create] = cloud.requests("POST", r"^/v4/linode/instances$")
        body = json.loads(create.body)
        assert body["authorized_keys"] == [public_key] and body["region"] == "us-east"
        assert body["root_pass"] == "root-pass-from-the-environment"
        assert body["tags"] == ["elasticcluster-cluster=c", "elasticcluster-node=frontend001"]
    elif provider == "upcloud":
        [create] = cloud.requests("POST", r"^/1.2/server$")
        server = json.loads(create.body)["server"]
        assert server["zone"] == "fi-hel1" and server["title"] == "c-frontend001"
        assert server["login_user"] == {"username": "root", "ssh_keys": {"ssh_key": [public_key]}}
    elif provider == "equinixmetal":
        [create] = cloud.requests("POST", r"/projects/project-id/devices$")
        body = json.loads(create.body)
        assert body["userdata"].startswith("#cloud-config\n") and public_key in body["userdata"]
        assert body["hostname"] == "c-frontend001"
    elif provider == "cloudsigma":
        [imported] = cloud.requests("POST", r"/keypairs/$")
        assert json.loads(imported.body)["objects"][0] == {"name": KEY_NAME, "public_key": public_key}
        [create] = cloud.requests("POST", r"/servers/$")
        assert json.loads(create.body)["pubkeys"] == ["6d7db550-d1c5-4e3b-9c0a-e83f6a2b8244"]
    elif provider == "digitalocean":
        [imported] = cloud.requests("POST", r"^/v2/account/keys$")
        assert json.loads(imported.body) == {"name": KEY_NAME, "public_key": public_key}
        [create] = cloud.requests("POST", r"^/v2/droplets$")
        body = json.loads(create.body)
        assert {k: body[k] for k in ("name", "region", "size", "image", "ssh_keys")} == \
            {"name": "c-frontend001", "region": "nyc1", "size": "512mb", "image": "119192817",
             "ssh_keys": [7717]}
    elif provider == "brightbox":
        [create] = cloud.requests("POST", r"^/1.0/servers$")
        body = json.loads(create.body)
        assert body["zone"] == "zon-6mxqw"
        assert public_key in base64.b64decode(body["user_data"]).decode()


# -- start, list-nodes -u, stop --------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(RECORDED))
def test_recorded_cloud_through_the_cli(provider, cli_here, ssh_key, monkeypatch):
    spec = RECORDED[provider]
    monkeypatch.setenv("LINODE_ROOT_PASS", "root-pass-from-the-environment")
    cloud = install(spec, monkeypatch)
    cli_here.write(config_text(spec, ssh_key))
    public_key = public_key_of(ssh_key)

    # the configuration holds: the driver's keys were checked when it loaded
    listed = cli_here("list-templates", "--json")
    assert listed.code == 0, listed.output
    assert [t["name"] for t in json.loads(listed.out)["templates"]] == ["c"], listed.output
    assert cloud.sent == []  # checking a configuration asks the cloud nothing

    started = cli_here("start", "c", "--no-setup", "-p", "1")
    assert "Traceback" not in started.output, started.output
    assert [shown(kwargs) for kwargs in cloud.creates] == [expected_create(provider, public_key, cloud)], \
        started.output
    check_create_request(provider, cloud, public_key)
    assert "root-pass-from-the-environment" not in started.output

    if spec.lists_created:
        assert started.code == 0, started.output
        assert "The nodes run and accept SSH" in started.err
        assert "Cluster name:      c" in started.out
    else:
        # the recorded cloud cannot answer what comes after the create call (see `why`)
        assert started.code == 1, started.output
        saved = remembered(cli_here)
        if provider in ("digitalocean", "brightbox"):
            assert "could not create frontend001" in started.err, started.output
            assert saved is None  # nothing exists on the cloud: nothing is remembered
            return
        assert "frontend001 not running after 2s (startup_timeout)" in started.err, (spec.why, started.output)
        [node] = saved["nodes"]
        assert node["instance_id"] and node["name"] == "frontend001"
        assert "root-pass-from-the-environment" not in stored_text(cli_here)  # secrets stay out of state

    listing = cli_here("list-nodes", "-u", "c", "--json")
    assert listing.code == 0, listing.output
    [node] = json.loads(listing.out)["cluster"]["nodes"]
    assert node["state"] == ("running" if spec.lists_created else "missing")

    stopped = cli_here("stop", "c", "--yes")
    if spec.deletes_created:
        assert stopped.code == 0, stopped.output
        assert remembered(cli_here) is None
        deletes = [s for s in cloud.sent if s.method == "DELETE" or "destroyVirtualMachine" in s.url
                   or "hosting.vm.delete" in (s.body or "")]
        assert deletes, "stop asked the cloud to delete the node"
    else:
        # the recorded cloud has no answer for deleting the node it created: the cluster is kept
        assert stopped.code == 1, stopped.output
        assert "the state file keeps them" in stopped.err
        assert remembered(cli_here) is not None
        # --force (with --yes: the user was told which ids may remain, and chose) forgets it,
        # failing all the same: the instance may still run, and the message names it
        forced = cli_here("stop", "c", "--yes", "--force")
        assert forced.code == 1, forced.output
        assert f"--force: forgot cluster 'c' although instance(s) {node['instance_id']} may still run" \
            in forced.err
        assert remembered(cli_here) is None


def test_a_key_pair_of_that_name_holding_another_key_is_refused(cli_here, ssh_key, monkeypatch):
    """libcloud's recorded Vultr account has key pair 'tester' holding another public key."""
    spec = RECORDED["vultr"]
    cloud = install(spec, monkeypatch)
    cli_here.write(config_text(spec, ssh_key).replace(f"user_key_name = {KEY_NAME}", "user_key_name = tester"))
    started = cli_here("start", "c", "--no-setup", "-p", "1")
    assert started.code == 1, started.output
    assert "a key pair named 'tester' already exists on the cloud with another key" in started.err
    assert "set user_key_name to a new name" in started.err
    assert cloud.creates == [] and cloud.requests("POST", r".") == []  # nothing imported, nothing created
    assert remembered(cli_here) is None
