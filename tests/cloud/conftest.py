"""Fixtures for the cloud lifecycle tests: a real moto EC2 server, in a private network namespace."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud import netns
from tests.cloud.fault_proxy import FaultProxy

MOTO_SITE = Path(__file__).resolve().parent / "moto_site"
#: setup never configures the machine the tests run on
NOOP_PLAYBOOK = Path(__file__).resolve().parent / "data" / "noop.yml"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzzSECRETzz"


@pytest.fixture(scope="module")
def private_net():
    ok, why = netns.available()
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"moto tests need a private network namespace: {why}")
        pytest.skip(f"moto tests need a private network namespace: {why}")
    with netns.private_network(any_address=True):
        yield


@pytest.fixture(scope="module")
def sshd(private_net, tmp_path_factory):
    """A real OpenSSH server on port 22 of every address of the private namespace.

    moto's instances have fake addresses; in the namespace they all lead here,
    so that the SSH wait of `start` has a real sshd to talk to. Log in as root
    with any key appended to ``authorized_keys``; setup never runs against it
    (the moto tests use --no-setup and a no-op playbook).
    """
    sshd_bin = Path("/usr/sbin/sshd")
    if not sshd_bin.exists():
        pytest.fail("the moto tests need OpenSSH's sshd (apt-get install -y openssh-server)")
    folder = tmp_path_factory.mktemp("sshd")
    host_key = folder / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.touch(mode=0o600)
    config = folder / "sshd_config"
    config.write_text(f"""\
Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
MaxStartups 2000
MaxSessions 100
LogLevel ERROR
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([str(sshd_bin), "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.05)
    yield authorized
    proc.terminate()
    proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_server(private_net):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class Moto:
    url: str
    ec2: object  # a boto3 EC2 client: the independent view of what exists
    image_id: str

    def instances(self, cluster: str | None = None, alive: bool = True) -> list[dict]:
        filters = [{"Name": "tag:elasticcluster-cluster", "Values": [cluster]}] if cluster else []
        found = []
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in (r for page in pages for r in page["Reservations"]):
            for instance in reservation["Instances"]:
                if not alive or instance["State"]["Name"] not in ("terminated", "shutting-down"):
                    found.append(instance)
        return found


@pytest.fixture
def moto(moto_server) -> Moto:
    import boto3

    urllib.request.urlopen(urllib.request.Request(moto_server + "/moto-api/reset", method="POST")).read()
    ec2 = boto3.client("ec2", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=SECRET)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return Moto(moto_server, ec2, image)


@pytest.fixture
def proxy(moto):
    proxy = FaultProxy(moto.url)
    yield proxy
    proxy.close()


@pytest.fixture
def ssh_key(tmp_path, sshd) -> Path:
    """A fresh ed25519 key pair, allowed into the test sshd; returns the private key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = tmp_path / "keys" / "id_ed25519"
    private.parent.mkdir()
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private.with_suffix(".pub").write_bytes(public + b" test@elasticcluster\n")
    with open(sshd, "ab") as stream:
        stream.write(public + b"\n")
    return private


def ec2_config(endpoint: str, image_id: str, key: Path, *, compute: int = 2, extra: str = "",
               cluster_extra: str = "") -> str:
    return f"""\
[cloud/moto]
provider = ec2_boto
ec2_url = {endpoint}
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = {SECRET}
ec2_region = us-east-1
{extra}

[login/ubuntu]
image_user = root
image_user_sudo = root
image_sudo = yes
user_key_name = elasticcluster-test
user_key_private = {key}
user_key_public = {key}.pub

[setup/slurm]
playbook_path = {NOOP_PLAYBOOK}
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/slurm]
cloud = moto
login = ubuntu
setup_provider = slurm
image_id = {image_id}
flavor = t2.micro
security_group = elasticcluster-test
frontend_nodes = 1
compute_nodes = {compute}
ssh_to = frontend
{cluster_extra}
"""


@dataclass
class FakeSecrets:
    """Files that stand for a node's secrets in the moto tests, and the list naming them."""

    root: Path
    listing: Path

    def present(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): p.read_text() for p in sorted(self.root.rglob("*")) if p.is_file()}


#: what FakeSecrets holds before and after a bake
FAKE_SECRETS = {"etc/ssh/ssh_host_ed25519_key": "PRIVATE HOST KEY", "etc/ssh/ssh_host_ed25519_key.pub": "PUBLIC",
                "etc/munge/munge.key": "MUNGE KEY", "etc/machine-id": "0123456789abcdef"}


@pytest.fixture
def fake_secrets(tmp_path) -> FakeSecrets:
    """The moto tests' "nodes" are this machine (its sshd, as root): a bake must never move its own
    /etc/ssh/ssh_host_* or anything else of it. The setup section's ``bake_secrets`` (see
    ``with_bake_secrets``) replaces the bundled list with these files of a temporary folder; the
    bake moves them to this machine's /run/elasticcluster-bake and back, as on a real node."""
    root = tmp_path / "fake-node"
    for name, text in FAKE_SECRETS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    listing = tmp_path / "bake-secrets.txt"
    listing.write_text(f"# a test's stand-ins for a node's secrets\n{root}/etc/ssh/ssh_host_*\n"
                       f"{root}/etc/munge/munge.key\n{root}/etc/machine-id  empty\n")
    return FakeSecrets(root, listing)


def with_bake_secrets(config: str, secrets: FakeSecrets) -> str:
    """``config`` (of ``ec2_config``) whose setup section names the fake secrets' list."""
    return config.replace("[setup/slurm]\n", f"[setup/slurm]\nbake_secrets = {secrets.listing}\n", 1)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _no_setup(args: tuple[str, ...]) -> tuple[str, ...]:
    """start, resize and remove-node against moto never run the setup step (the nodes are this machine)."""
    if args and args[0] in ("start", "resize", "remove-node") and "--no-setup" not in args:
        return (*args, "--no-setup")
    return args


@pytest.fixture
def ec(home, tmp_path):
    """Run the real CLI (``python -m elasticcluster -c CONFIG -s STORAGE ...``) in the namespace."""
    config = tmp_path / "config"
    storage = tmp_path / "storage"

    def env():
        full = dict(os.environ)
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MOTO_SITE), full.get("PYTHONPATH")]))
        return full

    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "elasticcluster", "-c", str(config), "-s", str(storage), *args]

    def run(*args: str, timeout: float = 300) -> Run:
        args = _no_setup(args)
        proc = subprocess.run(command(*args), capture_output=True, text=True, env=env(), timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(*args: str) -> subprocess.Popen:
        args = _no_setup(args)
        # a test run started in the background (`cmd &`) inherits SIGINT ignored, and Python
        # keeps it so: give the command the default, so that the Ctrl-C test can press Ctrl-C
        return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env(), stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def write(text: str) -> None:
        config.write_text(text)
        config.chmod(0o600)

    run.popen = popen
    run.write = write
    run.config = config
    run.storage = storage
    return run
