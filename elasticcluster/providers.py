"""The seed's providers (4.5.9-4.5.12), for clusters made by hand in Python.

``cloud_provider(provider, **keys)`` makes the cloud provider of any cloud
from the keys a ``[cloud/NAME]`` section would hold (checked the same way);
``BotoCloudProvider`` and ``GoogleCloudProvider`` are the seed's names for
EC2 and GCE; ``AnsibleSetupProvider`` is the setup provider. Give them to a
``Cluster`` and its seed methods run the cluster operations (as in the
seed's sample code, section 4.5.1)::

    cloud = elasticcluster.BotoCloudProvider("https://ec2.us-east-1.amazonaws.com",
                                             "us-east-1", access_key, secret_key)
    setup = elasticcluster.AnsibleSetupProvider({"frontend": ["slurm_master"],
                                                 "compute": ["slurm_worker"]})
    cluster = elasticcluster.Cluster("my-cluster", cloud, setup, "my-key", "~/.ssh/id_ed25519.pub",
                                     "~/.ssh/id_ed25519", repository=elasticcluster.ClusterRepository(path))
"""
from __future__ import annotations

from elasticcluster import operations  # noqa: F401 (gives the model its operations)
from elasticcluster.cloud import CloudProvider, provider_of
from elasticcluster.config.link import cloud_section
from elasticcluster.playbook import AnsibleSetupProvider
from elasticcluster.redact import register_secrets

__all__ = ["AnsibleSetupProvider", "BotoCloudProvider", "CloudProvider", "GoogleCloudProvider",
           "cloud_provider"]


def cloud_provider(provider: str, **keys) -> CloudProvider:
    """The cloud provider of ``provider`` (any name a cloud section's ``provider`` takes) with
    ``keys`` as that section would give them; not bound to a cluster until it is used."""
    spec = cloud_section(provider, {"provider": provider, **keys})
    register_secrets(v for k, v in spec.values.items() if spec.family.is_secret(k))
    return provider_of(spec)


def BotoCloudProvider(ec2_url: str, ec2_region: str, ec2_access_key: str, ec2_secret_key: str,
                      storage_path: str | None = None, request_floating_ip: bool = False,
                      **keys) -> CloudProvider:
    """An EC2 (or EC2-compatible) cloud, as the seed's ``ec2_boto`` provider (4.5.11).
    ``storage_path`` is accepted and unused: a cluster's files live in its repository."""
    return cloud_provider("ec2_boto", ec2_url=ec2_url, ec2_region=ec2_region, ec2_access_key=ec2_access_key,
                          ec2_secret_key=ec2_secret_key, request_floating_ip=request_floating_ip, **keys)


def GoogleCloudProvider(gce_client_id: str, gce_client_secret: str, gce_project_id: str,
                        zone: str = "us-central1-a", network: str = "default", email: str | None = None,
                        storage_path: str | None = None, **keys) -> CloudProvider:
    """Google Compute Engine, as the seed's ``google`` provider (4.5.12)."""
    return cloud_provider("google", gce_client_id=gce_client_id, gce_client_secret=gce_client_secret,
                          gce_project_id=gce_project_id, zone=zone, network=network, **keys)
