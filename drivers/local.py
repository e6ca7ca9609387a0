"""The local cloud: nodes are systemd containers on this machine's Docker (or Podman) engine.

A libcloud ``NodeDriver`` like any other, registered at run time by
``drivers/local.toml``: the node lifecycle cannot tell it from EC2. It talks
to the engine through the Docker Engine API (the ``docker`` Python package,
``pip install 'elasticcluster[local]'``), so a Podman socket that speaks the
same API works too.

Each cluster gets a user-defined bridge network of its own, on which Docker's
DNS resolves node names; each node runs systemd as PID 1 and gets fresh SSH
host keys, the login user and its authorized key at first boot. The base
image is built on first use with debootstrap.
"""
from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from libcloud.common.types import LibcloudError
from libcloud.compute.base import Node, NodeDriver, NodeImage, NodeSize
from libcloud.compute.types import NodeState

from elasticcluster.tags import TAG_CLUSTER, TAG_NODE

log = logging.getLogger("elasticcluster")

LABEL_MANAGED = "elasticcluster.managed"
LABEL_CLUSTER = "elasticcluster.cluster"
LABEL_NODE = "elasticcluster.node"
#: on a baked image: the node it was made from, and the name elasticcluster gave it
LABEL_BAKED_FROM = "elasticcluster.baked-from"
LABEL_IMAGE_NAME = "elasticcluster.image-name"
#: on a network whose nodes get fixed addresses
LABEL_STATIC = "elasticcluster.static-addresses"
DEFAULT_IMAGE = "elasticcluster/debian-node:bookworm"
#: where the nodes' shared /home folders live on this machine, one per cluster
DEFAULT_STATE_DIR = "/var/lib/elasticcluster/local"
#: a package cache all local nodes share, so that each package is downloaded once
DEFAULT_APT_CACHE = "/var/cache/elasticcluster/apt"
PACKAGES = "openssh-server,python3,sudo,iproute2,ca-certificates,systemd-sysv,dbus"

#: one process makes a cluster's network once, whichever driver object (thread) asks first
_NETWORK_LOCK = threading.Lock()

#: flavors: name -> (CPUs, memory in MiB)
SIZES = {"small": (1, 1024), "medium": (2, 2048), "large": (4, 4096)}

_STATES = {
    "running": NodeState.RUNNING,
    "created": NodeState.PENDING,
    "restarting": NodeState.REBOOTING,
    "paused": NodeState.PAUSED,
    "exited": NodeState.STOPPED,
    "dead": NodeState.ERROR,
    "removing": NodeState.TERMINATED,
}

INSTALL_HINT = ("install and start it: `apt-get install -y docker.io` then "
                "`dockerd >/var/log/dockerd.log 2>&1 &` (as root), or set docker_host in "
                "[cloud/local] to a running engine's socket (Podman's works too)")

FIRSTBOOT = """#!/bin/sh
# elasticcluster: runs once, at a node's first boot, before sshd.
set -e
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A
if [ -r /etc/elasticcluster/login ]; then
    user=$(cat /etc/elasticcluster/login)
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
    # a node from a baked image has the user already, and the cluster's shared /home may be new
    if [ ! -d "/home/$user" ]; then
        install -d -m 700 -o "$user" -g "$user" "/home/$user"
        cp -a /etc/skel/. "/home/$user/" && chown -R "$user:$user" "/home/$user"
    fi
    install -d -m 700 -o "$user" -g "$user" "/home/$user/.ssh"
    # /home may be shared by the cluster's nodes: add the key, keep what is there
    keys="/home/$user/.ssh/authorized_keys"
    touch "$keys" && chown "$user:$user" "$keys" && chmod 600 "$keys"
    grep -qxF -f /etc/elasticcluster/authorized_keys "$keys" || \\
        cat /etc/elasticcluster/authorized_keys >> "$keys"
    echo "$user ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-elasticcluster
    chmod 440 /etc/sudoers.d/90-elasticcluster
fi
if [ -x /etc/elasticcluster/userdata ]; then /etc/elasticcluster/userdata || true; fi
mkdir -p /var/lib/elasticcluster
touch /var/lib/elasticcluster/firstboot-done
"""

#: where a node sees the package cache its cluster shares with every local node
SHARED_APT = "/var/cache/elasticcluster/apt"

# Each node keeps its own /var/cache/apt/archives (apt locks that folder and does not wait for
# the lock, so one folder shared by nodes installing at the same time fails). After every
# `apt-get update` the packages of the shared folder appear in it as links, so apt does not
# download them again; before dpkg installs, the packages this node downloaded are copied
# (atomically) into the shared folder for the others.
APT_CACHE_SCRIPT = f"""#!/bin/sh
# elasticcluster: share downloaded packages between local nodes.
shared={SHARED_APT}
archives=/var/cache/apt/archives
case "$1" in
link)
    for f in "$shared"/*.deb; do
        [ -e "$f" ] || continue
        [ -e "$archives/${{f##*/}}" ] || ln -s "$f" "$archives/${{f##*/}}"
    done ;;
publish)
    cat >/dev/null
    for f in "$archives"/*.deb; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        name=${{f##*/}}
        [ -e "$shared/$name" ] && continue
        # a temporary name of its own: nodes share the folder, and their PIDs may be the same
        tmp=$(mktemp "$shared/.$name.XXXXXXXX") || continue
        if cp "$f" "$tmp"; then chmod 644 "$tmp"; mv -f "$tmp" "$shared/$name"; else rm -f "$tmp"; fi
    done ;;
esac
exit 0
"""

APT_CACHE_CONF = """\
APT::Update::Post-Invoke-Success { "/usr/local/sbin/elasticcluster-apt-cache link || true"; };
DPkg::Pre-Install-Pkgs { "/usr/local/sbin/elasticcluster-apt-cache publish || true"; };
"""

FIRSTBOOT_UNIT = """[Unit]
Description=elasticcluster first boot (SSH host keys, login user)
Before=ssh.service
ConditionPathExists=!/var/lib/elasticcluster/firstboot-done

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/elasticcluster-firstboot
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


class LocalEngineError(LibcloudError):
    """The container engine is missing, unreachable or refused a request."""

    def __init__(self, message: str):
        super().__init__(message, driver=None)

    def __str__(self) -> str:
        return self.value


class LocalNodeDriver(NodeDriver):
    """Nodes as systemd containers on the local Docker engine."""

    type = "local"
    name = "Local containers (Docker)"
    website = "https://docs.docker.com/engine/"
    features = {"create_node": ["ssh_key"]}

    def __init__(self, key: str | None = None, secret: str | None = None, docker_host: str | None = None,
                 base_image: str = DEFAULT_IMAGE, debian_suite: str = "bookworm",
                 debian_mirror: str | None = None, network: str = "elasticcluster",
                 shared_home: bool = True, apt_cache: str | None = DEFAULT_APT_CACHE,
                 state_dir: str = DEFAULT_STATE_DIR, **kwargs):
        self.key = key
        self.secret = secret
        self.docker_host = docker_host
        self.base_image = base_image
        self.debian_suite = debian_suite
        self.debian_mirror = debian_mirror
        self.network_prefix = network
        self.shared_home = shared_home
        self.apt_cache = apt_cache
        self.state_dir = Path(state_dir).expanduser()
        self._client = None

    # -- engine ----------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            try:
                import docker
            except ImportError:
                raise LocalEngineError("the local cloud needs the Python package 'docker': "
                                       "pip install 'elasticcluster[local]'") from None
            try:
                client = docker.DockerClient(base_url=self.docker_host) if self.docker_host \
                    else docker.from_env()
                client.ping()
            except Exception as err:
                where = self.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                raise LocalEngineError(f"cannot reach the Docker engine at {where} ({_short(err)}): "
                                       f"it is not running or not installed; {INSTALL_HINT}") from None
            self._client = client
        return self._client

    # -- catalogue ---------------------------------------------------------------

    def list_sizes(self, location=None) -> list[NodeSize]:
        return [NodeSize(id=name, name=name, ram=ram, disk=0, bandwidth=0, price=0, driver=self,
                         extra={"cpus": cpus}) for name, (cpus, ram) in SIZES.items()]

    def list_images(self, location=None) -> list[NodeImage]:
        images = [self._to_image(i) for i in self.client.images.list(filters={"label": LABEL_MANAGED})]
        names = {i.id for i in images}
        if self.base_image not in names:
            images.append(NodeImage(id=self.base_image, name=self.base_image, driver=self,
                                    extra={"built": False}))
        return images

    def get_image(self, image_id: str) -> NodeImage:
        """The image ``image_id``; the base image is built on first use."""
        import docker

        try:
            return self._to_image(self.client.images.get(image_id), image_id)
        except docker.errors.ImageNotFound:
            if image_id != self.base_image:
                raise LocalEngineError(f"image '{image_id}' does not exist in the local engine; the "
                                       f"local cloud builds '{self.base_image}' by itself") from None
        build_base_image(self.client, self.base_image, self.debian_suite,
                         self.debian_mirror or host_debian_mirror())
        return self._to_image(self.client.images.get(image_id), image_id)

    def _to_image(self, image, name: str | None = None) -> NodeImage:
        tags = image.tags or [image.id]
        labels = image.labels or {}
        extra = {"id": image.id, "tags": {TAG_CLUSTER: labels.get(LABEL_CLUSTER)} if labels.get(LABEL_CLUSTER)
                 else {}, "baked_from": labels.get(LABEL_BAKED_FROM), "name": labels.get(LABEL_IMAGE_NAME)}
        return NodeImage(id=name or tags[0], name=name or tags[0], driver=self, extra=extra)

    # -- baked images ------------------------------------------------------------

    def create_image(self, node: Node, name: str, description: str | None = None) -> NodeImage:
        """An image of ``node``: the engine's commit of its container, tagged
        ``elasticcluster/baked-CLUSTER-KIND:N`` (N counting up) and labelled with its cluster, so
        that ``stop`` and a CI's cleanup find it. What the container has on a tmpfs (/run, /tmp)
        or on a bind mount (/home, the package cache) is not in it."""
        container = self._container(node)
        if container is None:
            raise LocalEngineError(f"container {node.id[:12]} does not exist")
        labels = container.labels or {}
        cluster = labels.get(LABEL_CLUSTER) or "default"
        source = labels.get(LABEL_NODE) or container.name
        kind = re.sub(r"[0-9]+$", "", source) or source
        repository = f"elasticcluster/baked-{_slug(cluster)}-{_slug(kind)}"
        lock_path = Path(tempfile.gettempdir()) / "elasticcluster-baked-images.lock"
        with open(lock_path, "w") as lock:  # two bakes never take the same tag
            fcntl.flock(lock, fcntl.LOCK_EX)
            numbers = [int(tag.rpartition(":")[2]) for image in self.client.images.list(name=repository)
                       for tag in image.tags if tag.rpartition(":")[2].isdigit()]
            tag = str(max(numbers, default=0) + 1)
            # the image keeps the container's labels unless replaced: it is no node
            container.commit(repository=repository, tag=tag, message=description or name,
                             conf={"Labels": {LABEL_MANAGED: "1", LABEL_CLUSTER: cluster, LABEL_NODE: "",
                                              LABEL_BAKED_FROM: source, LABEL_IMAGE_NAME: name}})
        return self._to_image(self.client.images.get(f"{repository}:{tag}"), f"{repository}:{tag}")

    def delete_image(self, node_image: NodeImage) -> bool:
        """Remove an image (by the ``repository:tag`` or id it was listed with); one that is gone
        counts as removed; one that containers still use is refused by the engine."""
        import docker

        try:
            self.client.images.remove(node_image.id, noprune=False)
        except docker.errors.ImageNotFound:
            return True
        except docker.errors.APIError as err:
            raise LocalEngineError(f"image {node_image.id}: {_short(err)}") from None
        return True

    # -- nodes -------------------------------------------------------------------

    def create_node(self, name: str, size: NodeSize, image: NodeImage, ex_metadata: dict | None = None,
                    ex_login_key: str | None = None, ex_userdata: str | None = None,
                    ex_shared_folders: list | None = None) -> Node:
        """Create and boot one node; ``ex_login_key`` is ``USER:PUBLIC_KEY``."""
        tags = dict(ex_metadata or {})
        cluster = tags.get(TAG_CLUSTER) or "default"
        node_name = tags.get(TAG_NODE) or name
        cpus, ram = SIZES.get(size.id, (size.extra.get("cpus", 1), size.ram))
        devices = ["/dev/fuse:/dev/fuse:rwm"] if os.path.exists("/dev/fuse") else []
        volumes = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}}
        for host, inside in self._cluster_folders(cluster):
            volumes[host] = {"bind": inside, "mode": "rw"}
        for folder in ex_shared_folders or []:
            host, _, inside = str(folder).partition(":")
            volumes[host] = {"bind": inside or host, "mode": "rw"}
        # one thread at a time picks a free address and creates its container with it
        with _NETWORK_LOCK:
            network = self._ensure_network(cluster)
            container = self.client.containers.create(
                image.id, name=name, hostname=node_name, detach=True,
                labels={LABEL_MANAGED: "1", LABEL_CLUSTER: cluster, LABEL_NODE: node_name},
                cap_add=["SYS_ADMIN"], security_opt=["seccomp=unconfined"],
                tmpfs={"/run": "", "/run/lock": "", "/tmp": ""}, volumes=volumes, devices=devices,
                nano_cpus=int(cpus * 1e9), mem_limit=f"{ram}m", stop_signal="SIGRTMIN+3",
                environment={"container": "docker"}, network=network.name,
                # the other nodes resolve it by its node name (Docker's DNS); a fixed address
                # survives pause and resume, as a cloud's private address does
                networking_config={network.name: self.client.api.create_endpoint_config(
                    aliases=[node_name], ipv4_address=self._free_address(network, cluster))},
            )
        try:
            container.put_archive("/", _first_boot_files(ex_login_key, ex_userdata, bool(self.apt_cache)))
            container.start()
        except Exception:
            container.remove(force=True)
            raise
        container.reload()
        return self._to_node(container)

    def _cluster_folders(self, cluster: str) -> list[tuple[str, str]]:
        """Host folders every node of ``cluster`` shares: /home, and the apt package cache."""
        folders = []
        if self.shared_home:
            home = self.state_dir / _network_name("cluster", cluster) / "home"
            home.mkdir(parents=True, exist_ok=True)
            folders.append((str(home), "/home"))
        if self.apt_cache:
            cache = Path(self.apt_cache).expanduser()
            cache.mkdir(parents=True, exist_ok=True)
            folders.append((str(cache), SHARED_APT))
        return folders

    def _ensure_network(self, cluster: str):
        """The cluster's network (called with _NETWORK_LOCK held)."""
        name = _network_name(self.network_prefix, cluster)
        found = self.client.networks.list(names=[name])
        exact = [n for n in found if n.name == name]
        if exact:
            return exact[0]
        return self._create_network(name, cluster)

    def _create_network(self, name: str, cluster: str):
        """A bridge network whose subnet is given, not left to Docker: only there does Docker
        keep a node's address when it stops and starts again. The subnet is one Docker itself
        picks (it knows which ranges this machine uses): a probe network gets it, goes, and the
        cluster's network is made with it (again if another network took it meanwhile)."""
        import docker

        labels = {LABEL_MANAGED: "1", LABEL_CLUSTER: cluster, LABEL_STATIC: "1"}
        for _ in range(5):
            probe = self.client.networks.create(f"{name}-probe-{os.getpid()}-{time.monotonic_ns()}",
                                                driver="bridge",
                                                labels={LABEL_MANAGED: "1", LABEL_CLUSTER: cluster})
            try:
                pool = (probe.attrs.get("IPAM") or {}).get("Config") or [{}]
            finally:
                probe.remove()
            if not pool[0].get("Subnet"):
                break
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet=pool[0]["Subnet"], gateway=pool[0].get("Gateway"))])
            try:
                return self.client.networks.create(name, driver="bridge", ipam=ipam, check_duplicate=True,
                                                   labels=labels)
            except docker.errors.APIError as err:
                if "overlap" not in str(err).lower():
                    raise
        # no subnet to give: Docker picks addresses (they may change on resume)
        return self.client.networks.create(name, driver="bridge", check_duplicate=True,
                                           labels={LABEL_MANAGED: "1", LABEL_CLUSTER: cluster})

    def _free_address(self, network, cluster: str) -> str | None:
        """The lowest address of the network's subnet that no node of the cluster holds (None:
        the network was made without a subnet of its own, Docker picks)."""
        import ipaddress

        network.reload()
        config = ((network.attrs.get("IPAM") or {}).get("Config") or [{}])[0]
        if (network.attrs.get("Labels") or {}).get(LABEL_STATIC) != "1" or not config.get("Subnet"):
            return None
        hosts = ipaddress.ip_network(config["Subnet"]).hosts()
        taken = {config.get("Gateway") or str(next(hosts))}
        nodes = self.client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"},
                                            ignore_removed=True)
        for container in nodes:
            networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
            endpoint = networks.get(network.name) or {}
            taken.add(endpoint.get("IPAddress"))
            taken.add((endpoint.get("IPAMConfig") or {}).get("IPv4Address"))
        for address in hosts:
            if str(address) not in taken:
                return str(address)
        raise LocalEngineError(f"no free address left in {config['Subnet']} for cluster {cluster}")

    def list_nodes(self) -> list[Node]:
        # ignore_removed: a container of another cluster may go between the listing and its inspection
        containers = self.client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=1"},
                                                 ignore_removed=True)
        return [self._to_node(c) for c in containers]

    def _to_node(self, container) -> Node:
        labels = container.labels or {}
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ips = [n.get("IPAddress") for n in networks.values() if n.get("IPAddress")]
        state = _STATES.get(container.status, NodeState.UNKNOWN)
        return Node(id=container.id, name=container.name, state=state, public_ips=ips, private_ips=ips,
                    driver=self, extra={"tags": {TAG_CLUSTER: labels.get(LABEL_CLUSTER),
                                                 TAG_NODE: labels.get(LABEL_NODE)},
                                        "status": container.status})

    def _container(self, node: Node):
        import docker

        try:
            return self.client.containers.get(node.id)
        except docker.errors.NotFound:
            return None

    def destroy_node(self, node: Node) -> bool:
        container = self._container(node)
        if container is None:
            return True
        cluster = (container.labels or {}).get(LABEL_CLUSTER)
        container.remove(force=True, v=True)
        if cluster:
            self._remove_network_if_empty(cluster)
        return True

    def _remove_network_if_empty(self, cluster: str) -> None:
        import docker

        left = self.client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"},
                                          ignore_removed=True)
        if left:  # stopped (paused) nodes count: they join the network again when resumed
            return
        try:
            self.client.networks.get(_network_name(self.network_prefix, cluster)).remove()
        except docker.errors.APIError:  # gone already, or a node joined meanwhile
            pass
        shutil.rmtree(self.state_dir / _network_name("cluster", cluster), ignore_errors=True)

    def stop_node(self, node: Node) -> bool:
        container = self._container(node)
        if container is None:
            raise LocalEngineError(f"container {node.id[:12]} does not exist")
        container.stop(timeout=20)
        return True

    def start_node(self, node: Node) -> bool:
        container = self._container(node)
        if container is None:
            raise LocalEngineError(f"container {node.id[:12]} does not exist")
        container.start()
        return True

    def reboot_node(self, node: Node) -> bool:
        container = self._container(node)
        container.restart(timeout=20)
        return True


def _network_name(prefix: str, cluster: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{prefix}-{cluster}")


def _slug(text: str) -> str:
    """``text`` as part of an image repository name: lower case letters, digits and '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _short(err: Exception) -> str:
    text = re.sub(r"\s+", " ", str(err)).strip()
    return text[:200]


def _host_key_pair() -> tuple[str, str]:
    """A fresh ed25519 SSH host key pair (OpenSSH private key, public key line)."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()).decode()
    public = key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH).decode()
    return private, f"{public} root@elasticcluster\n"


def _first_boot_files(login_key: str | None, userdata: str | None, apt_cache: bool = False) -> bytes:
    """A tar of /etc/elasticcluster/{login,authorized_keys,userdata} for the first boot, and
    the node's own ed25519 SSH host key.

    The host key is made here (about a millisecond) rather than by the image's
    ``ssh-keygen -A`` at first boot (which then finds a key and skips): that
    also makes an RSA-3072 key, 0.1-3 s of CPU per node, the bulk of a node's
    boot when several nodes start at once on a small machine.
    """
    private, public = _host_key_pair()
    files = {"usr/local/sbin/elasticcluster-firstboot": (FIRSTBOOT, 0o755),  # this version's, not the image's
             "etc/ssh/ssh_host_ed25519_key": (private, 0o600),
             "etc/ssh/ssh_host_ed25519_key.pub": (public, 0o644)}
    if login_key:
        user, _, key = login_key.partition(":")
        files["etc/elasticcluster/login"] = (user.strip() + "\n", 0o644)
        files["etc/elasticcluster/authorized_keys"] = (key.strip() + "\n", 0o644)
    if userdata:
        files["etc/elasticcluster/userdata"] = (userdata, 0o755)
    if apt_cache:
        files["usr/local/sbin/elasticcluster-apt-cache"] = (APT_CACHE_SCRIPT, 0o755)
        files["etc/apt/apt.conf.d/90elasticcluster-cache"] = (APT_CACHE_CONF, 0o644)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("etc/elasticcluster")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- the base image ----------------------------------------------------------------


def host_debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror of this machine's apt sources (default: deb.debian.org)."""
    texts = []
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]:
        if path.suffix in ("", ".list", ".sources") and path.is_file():
            try:
                texts.append(path.read_text(errors="replace"))
            except OSError:
                continue
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line) or \
                re.match(r"^URIs:\s*(\S+)", line)
            if match and "security" not in match.group(1) and "/debian" in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def build_base_image(client, image: str, suite: str, mirror: str) -> None:
    """debootstrap a minimal Debian with systemd and sshd, and import it as ``image``."""
    lock_path = Path(tempfile.gettempdir()) / "elasticcluster-base-image.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(image)
            return  # another process built it while we waited
        except Exception:
            pass
        if shutil.which("debootstrap") is None:
            raise LocalEngineError("building the local base image needs debootstrap: "
                                   "apt-get install -y debootstrap")
        if os.geteuid() != 0:
            raise LocalEngineError(f"building the local base image '{image}' needs root (debootstrap); "
                                   "run the first `elasticcluster start` of a local template as root")
        with tempfile.TemporaryDirectory(prefix="elasticcluster-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            log.warning("building the local base image %s (Debian %s from %s): about a minute, "
                        "only this once", image, suite, mirror)
            _debootstrap(rootfs, suite, mirror)
            _customise(rootfs)
            log.warning("base image: importing into the container engine")
            _import(client, rootfs, image)
        log.warning("base image %s is ready", image)


def _debootstrap(rootfs: Path, suite: str, mirror: str) -> None:
    command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(rootfs), mirror]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = set()
    tail = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-5:]
        if not line.startswith("I: "):
            continue
        words = line[3:].split()
        if words and words[0].lower() in ("retrieving", "extracting", "unpacking", "configuring") \
                and words[0].lower() not in seen:
            seen.add(words[0].lower())
            log.warning("base image: %s packages ...", words[0].lower())
        log.info("base image: %s", line[3:].strip())
    if proc.wait() != 0:
        raise LocalEngineError(f"debootstrap failed (exit {proc.returncode}): {' | '.join(tail)}")


def _customise(rootfs: Path) -> None:
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    script = rootfs / "usr/local/sbin/elasticcluster-firstboot"
    script.write_text(FIRSTBOOT)
    script.chmod(0o755)
    unit = rootfs / "etc/systemd/system/elasticcluster-firstboot.service"
    unit.write_text(FIRSTBOOT_UNIT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "elasticcluster-firstboot.service"
    if not link.exists():
        link.symlink_to("/etc/systemd/system/elasticcluster-firstboot.service")
    for masked in ("getty.target", "console-getty.service", "systemd-udevd.service",
                   "systemd-modules-load.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
                   "systemd-remount-fs.service"):
        target = rootfs / "etc/systemd/system" / masked
        if not target.exists():
            target.symlink_to("/dev/null")
    (rootfs / "etc/machine-id").write_text("")
    apt_cache = rootfs / "var/cache/apt/archives"
    for deb in apt_cache.glob("*.deb"):
        deb.unlink()


def _import(client, rootfs: Path, image: str) -> None:
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=archive, check=True)
        archive.seek(0)

        def chunks():  # a generator, so that the request is sent chunked as announced
            while block := archive.read(1 << 20):
                yield block

        client.api.import_image_from_stream(chunks(), repository=repository, tag=tag,
                                            changes=['CMD ["/sbin/init"]',
                                                     f'LABEL {LABEL_MANAGED}="1"'])
