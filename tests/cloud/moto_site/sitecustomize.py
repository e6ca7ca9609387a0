"""Loaded by every Python process of the moto tests (PYTHONPATH): test-only fixes.

moto 5.2 answers with the EC2 XML namespace without the trailing slash that
libcloud's EC2 parser expects; we drop the slash here, in the tests, never in
the product. moto also reads CreateTags' lists from index 1 (``ResourceId.1``,
as botocore numbers them), where libcloud's ``ex_create_tags`` numbers from 0
(which EC2 itself takes): here it numbers from 1.
"""
import importlib.abc
import importlib.machinery
import sys

_TARGET = "libcloud.compute.drivers.ec2"


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.NAMESPACE = module.NAMESPACE.rstrip("/")
        module.BaseEC2NodeDriver.ex_create_tags = _create_tags_from_1


def _create_tags_from_1(self, resource, tags):
    if not tags:
        return None
    params = {"Action": "CreateTags", "ResourceId.1": resource.id}
    for index, key in enumerate(tags, 1):
        params[f"Tag.{index}.Key"] = key
        params[f"Tag.{index}.Value"] = tags[key]
    return self._get_boolean(self.connection.request(self.path, params=params).object)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
