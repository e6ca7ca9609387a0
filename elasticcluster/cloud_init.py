"""cloud-init user data that puts the login's SSH key on a node, merged with the template's own.

For clouds whose only way to a node's ``authorized_keys`` is the user data
(``drivers/_conventions.toml``, way ``user_data``). The key goes into
``ssh_authorized_keys`` (the image's default user; root too when the login
is root). A template's ``image_userdata`` is kept: a ``#cloud-config``
document gets the key added to it, anything else (a shell script, ...)
becomes the second part of a MIME multi-part document, which cloud-init runs
as it would have run it alone.
"""
from __future__ import annotations

from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

HEADER = "#cloud-config"


def with_ssh_key(userdata: str, public_key: str, image_user: str) -> str:
    """``userdata`` (may be empty) with cloud-init putting ``public_key`` on the node."""
    text = (userdata or "").strip()
    if not text:
        return _config({}, public_key, image_user)
    if text.startswith(HEADER):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            return _config(data, public_key, image_user)
    outer = MIMEMultipart()
    outer.attach(MIMEText(_config({}, public_key, image_user), "cloud-config"))
    kind = "x-shellscript" if text.startswith("#!") else "x-include-url" if text.startswith(
        "#include") else "plain"
    outer.attach(MIMEText(userdata, kind))
    return outer.as_string()


def _config(data: dict, public_key: str, image_user: str) -> str:
    import yaml

    data = dict(data)
    keys = list(data.get("ssh_authorized_keys") or [])
    if public_key not in keys:
        keys.append(public_key)
    data["ssh_authorized_keys"] = keys
    if image_user == "root":
        data["disable_root"] = False
    return HEADER + "\n" + yaml.safe_dump(data, default_flow_style=False, sort_keys=False, width=1 << 20)
