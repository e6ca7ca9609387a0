"""The mapped families' create calls carry every documented key (issue 10, item 4).

ElastiCluster 1.3's keys that used to be accepted and dropped now reach the
driver: on Google Compute Engine the boot disk's size and type, accelerators,
preemptible scheduling, network tags and project SSH keys (libcloud's recorded
GCE answers, in-process); on OpenStack a boot volume and the availability zone
(libcloud's recorded OpenStack answers); on EC2 the VPC (a subnet of it, and
security groups by id in it), the instance profile, the root volume, the
availability zone and spot prices, and floating IPs are released with their
node (a real moto EC2 server). Each test asserts the exact ``create_node``
arguments our code passed and what the cloud then holds or was sent.

Everything runs in a private network namespace (``private_net``).
"""
from __future__ import annotations

import functools
import json
import re

import pytest

from elasticcluster import lifecycle
from elasticcluster.cloud import TAG_CLUSTER, TAG_NODE, provider_for
from elasticcluster.config import load_config
from tests.cloud.conftest import SECRET
from tests.cloud.test_any_cloud import shown
from tests.cloud.test_providers import (
    GCE_CLIENT_ID,
    GCE_CLIENT_SECRET,
    GCE_PROJECT,
    KEYSTONE,
    PUBLIC_KEY,
    Sent,
    _keystone_v3_answer,
    libcloud_tests,
    recording,
    start_nodes,
    write_config,
)

pytestmark = pytest.mark.usefixtures("private_net")


def spy_on_create(cls, monkeypatch) -> list[dict]:
    """The keyword arguments of every ``cls.create_node`` call (the real call is made)."""
    calls: list[dict] = []
    original = cls.create_node

    @functools.wraps(original)
    def create_node(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "create_node", create_node)
    return calls


# -- Google Compute Engine ----------------------------------------------------------------------


GCE_13_KEYS = """\
boot_disk_type = pd-ssd
boot_disk_size = 50
tags = hpc, ssh-in
scheduling = preemptible
allow_project_ssh_keys = no
accelerator_type = nvidia-tesla-k80
accelerator_count = 1
location = us-central1-a
"""


def test_google_13_keys_reach_the_create_call(tmp_path, monkeypatch):
    libcloud_tests()
    from libcloud.common.google import GoogleBaseAuthConnection, GoogleInstalledAppAuthConnection
    from libcloud.compute.drivers.gce import GCENodeDriver, GCEZone

    clock = vars(GCEZone)["_now"]
    from libcloud.test.common.test_google import GoogleAuthMockHttp
    from libcloud.test.compute.test_gce import GCEMockHttp

    GCEZone._now = clock  # importing libcloud's test module gave GCEZone a fixed clock

    def rewrite(url):
        # the recorded answers are filed under project 'project_name' and instance 'node-name'
        url = url.replace(f"/projects/{GCE_PROJECT}", "/projects/project_name")
        return re.sub(r"/instances/g13-[a-z]+\d{3}", "/instances/node-name", url)

    sent: list[Sent] = []
    monkeypatch.setattr(GCENodeDriver.connectionCls, "conn_class", recording(GCEMockHttp, sent, rewrite))
    monkeypatch.setattr(GoogleBaseAuthConnection, "conn_class", recording(GoogleAuthMockHttp, sent))
    monkeypatch.setattr(GoogleInstalledAppAuthConnection, "get_code", lambda self: "code-from-the-browser")
    creates = spy_on_create(GCENodeDriver, monkeypatch)

    cloud = (f"[cloud/google]\nprovider = google\ngce_client_id = {GCE_CLIENT_ID}\n"
             f"gce_client_secret = {GCE_CLIENT_SECRET}\ngce_project_id = {GCE_PROJECT}\n")
    config = load_config(write_config(tmp_path, cloud, cloud_name="google", cluster="g13",
                                      image_id="debian-7-wheezy-v20131120", flavor="n1-standard-1",
                                      cluster_extra=GCE_13_KEYS))
    start_nodes(config, "g13", tmp_path)

    [kwargs] = [shown(c) for c in creates]
    # image, flavor and zone, found by name in libcloud's recorded lists
    assert [creates[0][arg].name for arg in ("image", "size", "location")] == \
        ["debian-7-wheezy-v20131120", "n1-standard-1", "us-central1-a"]
    assert kwargs == {
        "name": "g13-frontend001", "image": kwargs["image"], "size": kwargs["size"], "location": kwargs["location"],
        "ex_labels": {TAG_CLUSTER: "g13", TAG_NODE: "frontend001"},
        "ex_metadata": {"ssh-keys": f"ubuntu:{PUBLIC_KEY}", "block-project-ssh-keys": "TRUE"},
        "ex_network": "default",
        "ex_disk_size": 50, "ex_disk_type": "pd-ssd",
        "ex_accelerator_type": "nvidia-tesla-k80", "ex_accelerator_count": 1, "ex_on_host_maintenance": "TERMINATE",
        "ex_preemptible": True, "ex_tags": ["hpc", "ssh-in"],
    }
    [create] = [s for s in sent if s.method == "POST" and s.path.endswith("/zones/us-central1-a/instances")]
    body = create.json()
    boot = body["disks"][0]["initializeParams"]
    assert boot["diskSizeGb"] == 50 and boot["diskType"].endswith("/zones/us-central1-a/diskTypes/pd-ssd")
    assert body["guestAccelerators"][0]["acceleratorCount"] == 1
    assert body["guestAccelerators"][0]["acceleratorType"].endswith("/acceleratorTypes/nvidia-tesla-k80")
    assert body["scheduling"]["preemptible"] is True
    assert body["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert body["tags"]["items"] == ["hpc", "ssh-in"]
    metadata = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert metadata == {"ssh-keys": f"ubuntu:{PUBLIC_KEY}", "block-project-ssh-keys": "TRUE"}


# -- OpenStack ------------------------------------------------------------------------------------


def test_openstack_boot_volume_and_zone_reach_the_create_call(tmp_path, monkeypatch):
    libcloud_tests()
    import libcloud.compute.drivers.openstack as openstack
    from libcloud.test.compute.test_openstack import OpenStack_2_0_MockHttp

    sent: list[Sent] = []
    mock = recording(OpenStack_2_0_MockHttp, sent, lambda url: url.replace(
        "/v2/9c4693dce56b493b9b83197d900f7fba/", "/v2/1337/"), _v3_auth_tokens=_keystone_v3_answer)
    for name in dir(openstack):
        klass = getattr(openstack, name)
        if isinstance(klass, type) and issubclass(klass, openstack.OpenStackBaseConnection):
            monkeypatch.setattr(klass, "conn_class", mock)
    creates = spy_on_create(openstack.OpenStack_1_1_NodeDriver, monkeypatch)

    cloud = (f"[cloud/openstack]\nprovider = openstack\nauth_url = {KEYSTONE}\nusername = u\npassword = p\n"
             "project_name = science\nregion_name = regionOne\n")
    config = load_config(write_config(tmp_path, cloud, cloud_name="openstack", cluster="os13", image_id="7",
                                      flavor="512 slice", cluster_extra="boot_disk_size = 30\n"
                                      "boot_disk_type = ssd\navailability_zone = nova-az2\n"))
    start_nodes(config, "os13", tmp_path)

    [kwargs] = [shown(c) for c in creates]
    assert kwargs == {
        "name": "os13-frontend001", "image": ("NodeImage", "7"), "size": ("NodeSize", "2"),
        "ex_keyname": "elasticcluster-test",
        # found by name among the project's groups (the recorded 'default' has id 2)
        "ex_security_groups": [("OpenStackSecurityGroup", "2")],
        "ex_metadata": {TAG_CLUSTER: "os13", TAG_NODE: "frontend001"},
        "ex_availability_zone": "nova-az2",
        "ex_blockdevicemappings": [{"boot_index": 0, "uuid": "7", "source_type": "image",
                                    "destination_type": "volume", "volume_size": 30, "volume_type": "ssd",
                                    "delete_on_termination": True}],
    }
    [create] = [s for s in sent if s.method == "POST" and s.path.endswith("/servers")]
    server = create.json()["server"]
    assert server["availability_zone"] == "nova-az2"
    assert server["block_device_mapping_v2"] == kwargs["ex_blockdevicemappings"]


# -- EC2 (moto) -----------------------------------------------------------------------------------


@pytest.fixture
def ec2_namespace(monkeypatch):
    """moto answers in EC2's XML namespace without libcloud's trailing slash (as in moto_site)."""
    import libcloud.compute.drivers.ec2 as ec2

    monkeypatch.setattr(ec2, "NAMESPACE", ec2.NAMESPACE.rstrip("/"))


def _vpc(moto) -> tuple[str, dict[str, str]]:
    """A VPC named 'hpc' with a subnet in each of two zones: (vpc id, zone -> subnet id)."""
    vpc = moto.ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    moto.ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "hpc"}])
    subnets = {}
    for index, zone in enumerate(("us-east-1b", "us-east-1c")):
        subnets[zone] = moto.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.7.{index}.0/24",
                                               AvailabilityZone=zone)["Subnet"]["SubnetId"]
    return vpc, subnets


def _instance_profile(moto) -> str:
    import boto3

    iam = boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                       aws_secret_access_key=SECRET)
    return iam.create_instance_profile(InstanceProfileName="hpc-nodes")["InstanceProfile"]["Arn"]


EC2_13 = """\
[cloud/moto]
provider = ec2_boto
ec2_url = {url}
ec2_access_key = AKIDEXAMPLE
ec2_secret_key = {secret}
ec2_region = us-east-1
vpc = hpc
instance_profile = hpc-nodes
price = 0.25
"""


def test_ec2_13_keys_reach_the_create_call(moto, ec2_namespace, tmp_path, monkeypatch):
    from libcloud.compute.drivers.ec2 import EC2NodeDriver

    vpc, subnets = _vpc(moto)
    profile = _instance_profile(moto)
    creates = spy_on_create(EC2NodeDriver, monkeypatch)
    config = load_config(write_config(
        tmp_path, EC2_13.format(url=moto.url, secret=SECRET), cloud_name="moto", cluster="e13",
        image_id=moto.image_id, flavor="t2.micro",
        cluster_extra="boot_disk_size = 20\nboot_disk_type = gp3\navailability_zone = us-east-1c\n"))
    assert "e13" in config.templates, config.skipped
    cluster, _ = start_nodes(config, "e13", tmp_path)

    image = moto.ec2.describe_images(ImageIds=[moto.image_id])["Images"][0]
    group = moto.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                       {"Name": "group-name", "Values": ["default"]}])
    [kwargs] = [shown(c) for c in creates]
    root_device = image["BlockDeviceMappings"][0]["DeviceName"]
    assert kwargs == {
        "name": "e13-frontend001", "image": ("NodeImage", moto.image_id), "size": ("NodeSize", "t2.micro"),
        # the zone asked for (availability_zone, ElastiCluster 1.3's name for it), found by name
        "location": ("NodeLocation", kwargs["location"][1]),
        "ex_keyname": "elasticcluster-test", "ex_clienttoken": cluster.get_all_nodes()[0].extra["client_token"],
        "ex_metadata": {TAG_CLUSTER: "e13", TAG_NODE: "frontend001"},
        # vpc: the VPC's subnet in the node's zone; groups by id (EC2 takes no names with a subnet)
        "ex_subnet": ("EC2NetworkSubnet", subnets["us-east-1c"]),
        "ex_security_group_ids": [group["SecurityGroups"][0]["GroupId"]],
        "ex_iamprofile": "hpc-nodes", "ex_spot_max_price": 0.25, "ex_spot": True,
        "ex_blockdevicemappings": [{"DeviceName": root_device,
                                    "Ebs": {"VolumeSize": 20, "VolumeType": "gp3", "DeleteOnTermination": "true"}}],
    }
    assert creates[0]["location"].name == "us-east-1c"

    # and what EC2 made of them
    [instance] = moto.instances("e13")
    assert instance["SubnetId"] == subnets["us-east-1c"] and instance["VpcId"] == vpc
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1c"
    assert instance["IamInstanceProfile"]["Arn"] == profile
    assert instance.get("InstanceLifecycle") == "spot"
    [root] = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == root_device]
    volume = moto.ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
    assert (volume["Size"], volume["VolumeType"]) == (20, "gp3")
    assert [n.instance_id for n in cluster.get_all_nodes()] == [instance["InstanceId"]]


def test_ec2_security_group_is_made_in_the_vpc(moto, ec2_namespace, tmp_path):
    vpc, _ = _vpc(moto)
    _instance_profile(moto)
    text = EC2_13.format(url=moto.url, secret=SECRET)
    path = write_config(tmp_path, text, cloud_name="moto", cluster="e13", image_id=moto.image_id,
                        flavor="t2.micro")
    path.write_text(path.read_text().replace("security_group = default", "security_group = hpc-ssh"))
    start_nodes(load_config(path), "e13", tmp_path)
    [group] = moto.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["hpc-ssh"]}])[
        "SecurityGroups"]
    assert group["VpcId"] == vpc
    assert any(p.get("FromPort") == 22 for p in group["IpPermissions"])
    [instance] = moto.instances("e13")
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]


def test_floating_ip_is_released_with_its_node(moto, ec2_namespace, tmp_path):
    config = load_config(write_config(
        tmp_path, EC2_13.format(url=moto.url, secret=SECRET).replace("vpc = hpc\ninstance_profile = hpc-nodes\n"
                                                                     "price = 0.25\n", "request_floating_ip = yes\n"),
        cloud_name="moto", cluster="fip", image_id=moto.image_id, flavor="t2.micro"))
    cluster, _ = start_nodes(config, "fip", tmp_path)
    provider = provider_for(config, "moto", "fip")
    [node] = cluster.get_all_nodes()
    [instance] = provider.list_instances(known_ids=[node.instance_id])
    # moto gives every instance a public address, so `start` never needs one: ask for it here
    node.extra["floating_ip"] = provider.floating_ip(instance)
    [address] = moto.ec2.describe_addresses()["Addresses"]
    assert address["PublicIp"] == node.extra["floating_ip"] and address["InstanceId"] == node.instance_id
    outcome = lifecycle.terminate_instances(provider, cluster)
    assert not outcome.failed
    assert moto.ec2.describe_addresses()["Addresses"] == []  # released, not left to bill
    assert "floating_ip" not in node.extra


def test_ec2_13_keys_through_the_cli(moto, ec, ssh_key):
    """The same keys from a whole `start --no-setup` in a process of its own."""
    vpc, subnets = _vpc(moto)
    _instance_profile(moto)
    text = (EC2_13.format(url=moto.url, secret=SECRET) + f"""
[login/root]
image_user = root
image_user_sudo = root
image_sudo = no
user_key_name = elasticcluster-test
user_key_private = {ssh_key}
user_key_public = {ssh_key}.pub

[setup/noop]
frontend_groups = slurm_master
compute_groups = slurm_clients

[cluster/e13]
cloud = moto
login = root
setup_provider = noop
image_id = {moto.image_id}
flavor = t2.micro
frontend_nodes = 1
compute_nodes = 1
compute_nodes_min = 1
ssh_to = frontend001
boot_disk_size = 12
availability_zone = us-east-1b
""")
    ec.write(text)
    started = ec("start", "e13")
    assert started.returncode == 0, started.output
    instances = moto.instances("e13")
    assert len(instances) == 2
    assert {i["SubnetId"] for i in instances} == {subnets["us-east-1b"]}
    assert {i["VpcId"] for i in instances} == {vpc}
    listed = json.loads(ec("list-nodes", "e13", "--json").stdout)["cluster"]
    assert listed["frontend"] == "frontend001"
    assert ec("stop", "e13", "--yes").returncode == 0
    assert moto.instances("e13") == []
