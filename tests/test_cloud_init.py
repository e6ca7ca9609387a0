"""cloud-init user data carrying the login's key, merged with the template's own (elasticcluster/cloud_init.py)."""
from __future__ import annotations

import email

import yaml

from elasticcluster.cloud_init import with_ssh_key

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc2ZWVkLWVsYXN0aWNjbHVzdGVyLXRlc3Qta2V5LTAx me@here"


def _config(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_no_userdata_of_its_own():
    assert _config(with_ssh_key("", KEY, "ubuntu")) == {"ssh_authorized_keys": [KEY]}
    # root logins need cloud-init to leave root's authorized_keys alone
    assert _config(with_ssh_key("", KEY, "root")) == {"ssh_authorized_keys": [KEY], "disable_root": False}


def test_a_cloud_config_of_its_own_gets_the_key_added():
    own = "#cloud-config\npackages: [htop]\nssh_authorized_keys:\n  - ssh-rsa AAAA other@there\n"
    assert _config(with_ssh_key(own, KEY, "centos")) == {
        "packages": ["htop"], "ssh_authorized_keys": ["ssh-rsa AAAA other@there", KEY]}


def test_a_script_of_its_own_becomes_the_second_part_of_a_multipart_document():
    script = "#!/bin/sh\ntouch /var/tmp/was-here\n"
    message = email.message_from_string(with_ssh_key(script, KEY, "ubuntu"))
    assert message.is_multipart()
    first, second = message.get_payload()
    assert first.get_content_type() == "text/cloud-config"
    assert _config(first.get_payload(decode=True).decode()) == {"ssh_authorized_keys": [KEY]}
    assert second.get_content_type() == "text/x-shellscript"
    assert second.get_payload(decode=True).decode() == script
