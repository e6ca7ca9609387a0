"""What a libcloud driver takes, read from its code (and kept on disk between runs).

A driver's constructor and ``create_node`` parameters, each with whether it
is required and its type (from its default, its annotation, or the
``:type NAME:`` line of libcloud's docstrings), the ``create_node`` features
it declares (``ssh_key``: ``auth`` takes an SSH key) and the methods it
implements (locations, key pairs, ``ex_list_*``). The configuration is checked
against it and the node lifecycle fills ``create_node`` from it.

Reading it imports libcloud (a quarter of a second), so what was read is kept
in ``$XDG_CACHE_HOME/elasticcluster/drivers.json``, keyed by the installed
libcloud's files (and a driver module of one's own by its file): ``list-templates``
then checks a configuration against it without importing libcloud.
``ELASTICCLUSTER_NO_DRIVER_CACHE=1`` bypasses it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

FORMAT = 1

#: value types of parameters: how a configuration value is read into them
TYPES = ("string", "integer", "number", "boolean", "list", "dict", "object")

_DOC_TYPE = re.compile(r":type\s+(\w+)\s*:\s*(.+)")
_SECRET = re.compile(r"(^key$|secret|password|passwd|_pass$|^pass$|token|credential)", re.I)
#: methods of NodeDriver that a driver may implement; kept to say what the driver can do
_CAPABILITIES = ("list_locations", "list_sizes", "list_images", "list_key_pairs",
                 "import_key_pair_from_string", "create_key_pair", "get_key_pair",
                 "start_node", "stop_node")


@dataclass(frozen=True)
class Param:
    """One named parameter of a constructor or of ``create_node``."""

    name: str
    required: bool
    #: one of TYPES, or None when the code does not say
    type: str | None = None
    #: for "object": the class the driver expects (``NodeLocation``, ``CloudStackNetwork``...)
    of: str = ""
    #: the default as text, for messages ("" when required or not printable)
    default: str = ""

    @property
    def secret(self) -> bool:
        return bool(_SECRET.search(self.name))

    def expect(self) -> str:
        """What a configuration value must look like, for messages."""
        return {
            "string": "a text value",
            "integer": "a whole number",
            "number": "a number",
            "boolean": "yes or no",
            "list": "a comma-separated list",
            "dict": "key=value pairs separated by commas (or a JSON object)",
            "object": f"the id or name of a {self.of or 'cloud object'}",
        }.get(self.type or "", "a value")


@dataclass(frozen=True)
class DriverInfo:
    """What one driver class takes and can do."""

    #: ``module:Class`` of the class that the constructor really makes (libcloud picks a
    #: subclass by API version in ``__new__``: DigitalOcean, Linode, Vultr, OpenStack...)
    cls: str
    init: dict[str, Param] = field(default_factory=dict)
    create: dict[str, Param] = field(default_factory=dict)
    #: ``create_node`` takes keywords it does not name (``**kwargs``)
    create_kwargs: bool = False
    features: tuple[str, ...] = ()
    #: NodeDriver methods the class implements (not the base class's NotImplementedError)
    implements: tuple[str, ...] = ()
    #: the class's ``ex_list_*`` methods, which find the objects some parameters take
    lists: tuple[str, ...] = ()
    #: ``create_key_pair`` takes the public key (DigitalOcean, Linode...): it imports one
    create_key_pair_takes_key: bool = False
    #: the constructor (its ``__new__``) refused the arguments it was given: why
    refused: str = ""
    #: the class picks a subclass in ``__new__`` (so what it takes depends on the arguments
    #: named here: their values, secrets aside, are part of the disk cache's key)
    dispatches: bool = False
    new_params: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.cls.rpartition(":")[2]

    def has(self, method: str) -> bool:
        return method in self.implements or method in self.lists

    def can_import_keys(self) -> bool:
        return "import_key_pair_from_string" in self.implements or self.create_key_pair_takes_key

    def init_text(self) -> str:
        required = [p for p in self.init.values() if p.required]
        optional = [p for p in self.init.values() if not p.required]
        return (f"{self.name} takes: required {', '.join(p.name for p in required) or 'none'}; "
                f"optional {', '.join(p.name for p in optional) or 'none'}")

    def create_text(self, skip=()) -> str:
        names = [p for p in self.create if p not in skip]
        return f"{self.name}.create_node takes: {', '.join(names) or 'nothing else'}"

    def to_json(self) -> dict:
        data = asdict(self)
        data["init"] = [asdict(p) for p in self.init.values()]
        data["create"] = [asdict(p) for p in self.create.values()]
        return data

    @classmethod
    def from_json(cls, data: dict) -> DriverInfo:
        data = dict(data)
        data["init"] = {p["name"]: Param(**p) for p in data["init"]}
        data["create"] = {p["name"]: Param(**p) for p in data["create"]}
        for name in ("features", "implements", "lists", "new_params"):
            data[name] = tuple(data.get(name, ()))
        return cls(**data)


# -- reading a class ---------------------------------------------------------------------------


def _type_of_default(default) -> str | None:
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "string"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, dict):
        return "dict"
    return None


def _type_of_annotation(annotation) -> tuple[str | None, str]:
    if annotation is inspect.Parameter.empty:
        return None, ""
    if isinstance(annotation, str):
        return _type_of_text(annotation)
    import typing  # only when a driver's signature is read afresh

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        found = {_type_of_annotation(a) for a in args}
        return found.pop() if len(found) == 1 else (None, "")
    if origin in (list, tuple, set):
        return "list", ""
    if origin is dict:
        return "dict", ""
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
              dict: "dict"}
    if annotation in simple:
        return simple[annotation], ""
    if isinstance(annotation, type):
        return "object", annotation.__name__
    return None, ""


def _type_of_text(text: str) -> tuple[str | None, str]:
    """The type a docstring's ``:type x:`` line (or a string annotation) names."""
    text = text.strip().strip(".")
    lowered = text.lower()
    if re.match(r"``?(list|tuple|set)``?|list\b|\blist of|typing\.list|list\[", lowered):
        match = re.search(r":class:`~?\.?([\w.]+)`", text)
        return "list", match.group(1).rpartition(".")[2] if match else ""
    if re.match(r"``?(dict)``?|dict\b|typing\.dict|dict\[", lowered):
        return "dict", ""
    if " or " in lowered or "|" in lowered:
        return None, ""
    for word, kind in (("str", "string"), ("unicode", "string"), ("bool", "boolean"),
                       ("int", "integer"), ("float", "number")):
        if re.fullmatch(rf"``?{word}``?|{word}|optional\[{word}\]", lowered):
            return kind, ""
    match = re.search(r":class:`~?\.?([\w.]+)`", text)
    if match:
        return "object", match.group(1).rpartition(".")[2]
    return None, ""


def _doc_types(*functions) -> dict[str, str]:
    types: dict[str, str] = {}
    for function in functions:
        for name, text in _DOC_TYPE.findall(inspect.getdoc(function) or ""):
            types.setdefault(name, text)
    return types


def _param(p: inspect.Parameter, doc: dict[str, str]) -> Param:
    kind, of = _type_of_annotation(p.annotation)
    if kind is None:
        kind = _type_of_default(p.default)
    if kind is None and p.name in doc:
        kind, of = _type_of_text(doc[p.name])
    default = ""
    if p.default is not p.empty and isinstance(p.default, (str, int, float, bool)):
        default = repr(p.default)
    return Param(p.name, p.default is p.empty, kind, of, default)


def _named(function) -> tuple[list[inspect.Parameter], bool]:
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return [], True
    named = [p for p in params if p.name not in ("self", "cls")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def constructor_params(cls) -> dict[str, Param]:
    """The constructor's parameters: those of the first ``__init__`` up the class's bases, and
    of the next ones while each passes ``**kwargs`` on (libcloud's ``BaseDriver`` takes key,
    secret, secure, host, port, api_version, region), plus those of a ``__new__`` that picks
    the class by API version. Required: without a default in the first ``__init__``. Typed by
    the first definition that says (``__new__``'s ``api_version="4.0"`` makes it text)."""
    found: dict[str, Param] = {}
    hints: dict[str, Param] = {}
    for klass in cls.__mro__[:-1]:
        # types may be said further up than the arguments are taken (BaseDriver documents port)
        for function in (klass.__dict__.get("__new__"), klass.__dict__.get("__init__")):
            if function is not None:
                function = getattr(function, "__func__", function)
                doc = _doc_types(function, klass)
                for p in _named(function)[0]:
                    hint = _param(p, doc)
                    if hint.type is not None:
                        hints.setdefault(p.name, hint)
    first = True
    for klass in cls.__mro__:
        if klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        named, passes_on = _named(init)
        doc = _doc_types(init, klass)
        for p in named:
            param = _param(p, doc)
            old = found.get(p.name)
            if old is None:
                found[p.name] = Param(p.name, param.required and first, param.type, param.of,
                                      param.default)
            elif old.type is None and param.type is not None:
                found[p.name] = Param(old.name, old.required, param.type, param.of, old.default)
        if named:
            first = False
        if not passes_on:
            break
    for name, hint in hints.items():
        old = found.get(name)
        if old is not None and (old.type is None or name == "api_version"):
            # api_version: __new__ compares it with text ("4.0") even where __init__ defaults to None
            found[name] = Param(name, old.required, hint.type, hint.of, old.default or hint.default)
    return found


def create_params(cls) -> tuple[dict[str, Param], bool]:
    named, kwargs = _named(cls.create_node)
    doc = _doc_types(cls.create_node)
    return {p.name: _param(p, doc) for p in named}, kwargs


def _implements(cls) -> tuple[str, ...]:
    from libcloud.compute.base import NodeDriver

    return tuple(name for name in _CAPABILITIES
                 if getattr(cls, name, None) is not getattr(NodeDriver, name, None))


@cache
def read_class(cls) -> DriverInfo:
    """What the class of a driver already made takes (once per class)."""
    return read(cls)


def read(cls, refused: str = "") -> DriverInfo:
    """What ``cls`` takes (libcloud is imported by then)."""
    init = constructor_params(cls)
    create, create_kwargs = create_params(cls)
    key_params = _named(cls.create_key_pair)[0] if hasattr(cls, "create_key_pair") else []
    features = tuple((getattr(cls, "features", None) or {}).get("create_node") or ())
    lists = tuple(sorted(name for name in dir(cls) if name.startswith("ex_list_")
                         and callable(getattr(cls, name, None))))
    return DriverInfo(
        cls=f"{cls.__module__}:{cls.__qualname__}", init=init, create=create,
        create_kwargs=create_kwargs, features=features, implements=_implements(cls), lists=lists,
        create_key_pair_takes_key="create_key_pair" in _implements(cls)
        and any(p.name in ("public_key", "ex_public_key", "key_material") for p in key_params),
        refused=refused)


def concrete_class(cls, args: dict):
    """The class ``cls(**args)`` makes: libcloud picks a subclass by API version in ``__new__``,
    which neither contacts the cloud nor runs ``__init__``. Raises what ``__new__`` raises."""
    new = getattr(cls, "__new__", object.__new__)
    if new is object.__new__:
        return cls
    return type(new(cls, **args))


def culprit(cls, args: dict) -> str | None:
    """The one argument without which ``__new__`` accepts the others, if there is one."""
    for name in sorted(args):
        rest = {k: v for k, v in args.items() if k != name}
        try:
            concrete_class(cls, rest)
        except Exception:  # noqa: BLE001 (a driver's __new__ may raise anything)
            continue
        return name
    return None


# -- the disk cache -----------------------------------------------------------------------------


def _stamp(module: str) -> list | None:
    """Path, mtime and size of the file of ``module`` (found, not imported), or None."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    base = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    rest = module.split(".")[1:]
    candidates = [base.joinpath(*rest).with_suffix(".py"), base.joinpath(*rest, "__init__.py")] \
        if rest else [Path(spec.origin)]
    if rest and not any(path.exists() for path in candidates):
        # a package mapped elsewhere (setup.cfg's package_dir): ask the import system, which
        # imports the parent packages (elasticcluster.drivers: nothing heavy)
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin:
            candidates.append(Path(found.origin))
    for path in candidates:
        try:
            st = path.stat()
        except OSError:
            continue
        return [str(path), st.st_mtime_ns, st.st_size]
    return None


def libcloud_stamp() -> list:
    """What identifies the installed libcloud: its package and provider table files."""
    return [_stamp("libcloud"), _stamp("libcloud.compute.providers")]


def consulted_files() -> list[str]:
    """Files whose change makes what was read here stale (for the template cache)."""
    return [entry[0] for entry in libcloud_stamp() if entry]


def _cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "elasticcluster" / "drivers.json"


class _Store:
    """The on-disk table of what drivers take, valid for one installed libcloud."""

    def __init__(self):
        # always on: it checks itself against libcloud's files (ELASTICCLUSTER_NO_CACHE is about
        # the list-templates report; ELASTICCLUSTER_NO_DRIVER_CACHE=1 reads every driver afresh)
        self.enabled = not os.environ.get("ELASTICCLUSTER_NO_DRIVER_CACHE")
        self.stamp = libcloud_stamp() if self.enabled else None
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if self.enabled:
            try:
                with open(_cache_path(), encoding="utf-8") as stream:
                    data = json.load(stream)
                if data.get("format") == FORMAT and data.get("libcloud") == self.stamp:
                    self.entries = dict(data["entries"])
            except (OSError, ValueError, KeyError, TypeError):
                pass

    def get(self, key: str) -> dict | None:
        return self.entries.get(key) if self.enabled else None

    def put(self, key: str, value: dict) -> None:
        if self.enabled:
            self.entries[key] = value
            self.save()

    def save(self) -> None:
        path = _cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-drivers-")
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump({"format": FORMAT, "libcloud": self.stamp, "entries": self.entries}, stream)
            os.replace(tmp, path)
        except OSError:
            pass


@cache
def _store() -> _Store:
    return _Store()


def forget_store() -> None:
    """Read the disk cache again on next use (tests change HOME between runs)."""
    _store.cache_clear()


def _cache_key(provider: str, driver: str | None, args: dict | None, new_params=()) -> str:
    """The disk cache's key: the arguments' names, and the values of those ``__new__`` picks
    the class by (never of a secret-looking one); ``args=None``: the class whatever they are."""
    if args is None:
        return json.dumps([provider, driver or "", "*"])
    shown = {k: (v if k in new_params and not _SECRET.search(k) else "") for k, v in sorted(args.items())}
    return json.dumps([provider, driver or "", shown], sort_keys=True, default=str)


def driver_for(provider: str, driver: str | None, args: dict, load_class) -> DriverInfo:
    """What the driver of ``provider`` (or ``driver = module:Class``) takes, for constructor
    arguments ``args`` (they may pick the class); ``load_class()`` imports and returns the class
    named by the provider. A driver of one's own is kept with its module file's stamp."""
    if driver:
        driver = json.dumps([driver, _stamp(driver.partition(":")[0])])
    general = _cached(_cache_key(provider, driver, None))
    if general is not None and not general.dispatches:
        return general
    if general is not None:
        particular = _cached(_cache_key(provider, driver, args, general.new_params))
        if particular is not None:
            return particular
    base = load_class()
    refused = ""
    dispatches = getattr(base, "__new__", object.__new__) is not object.__new__
    try:
        cls = concrete_class(base, args)
    except Exception as err:  # noqa: BLE001 (a driver's __new__ may raise anything)
        name = culprit(base, args)
        refused = f"{name}: {err}" if name else str(err) or type(err).__name__
        # what the class would be without the argument it refuses (or with none at all)
        cls = base
        for fewer in ({k: v for k, v in args.items() if k != name}, {"key": "-"}):
            try:
                cls = concrete_class(base, fewer)
                break
            except Exception:  # noqa: BLE001, S112
                continue
    new = getattr(base, "__new__", None)
    new_params = tuple(p.name for p in _named(getattr(new, "__func__", new))[0]) if dispatches else ()
    info = replace(read(cls, refused), dispatches=dispatches, new_params=new_params)
    _store().put(_cache_key(provider, driver, None), replace(info, refused="").to_json())
    if dispatches:
        _store().put(_cache_key(provider, driver, args, new_params), info.to_json())
    return info


def _cached(key: str) -> DriverInfo | None:
    data = _store().get(key)
    if data is None:
        return None
    try:
        return DriverInfo.from_json(data)
    except (TypeError, KeyError, ValueError):
        return None


# -- values --------------------------------------------------------------------------------------


_TRUE = {"yes", "true", "on", "1", "y"}
_FALSE = {"no", "false", "off", "0", "n"}


def convert(param: Param, value):
    """A configuration value (text) as ``param`` takes it; ValueError if it cannot be.

    A parameter whose type the code does not say gets numbers, yes/no and
    comma-separated lists read as such (``parse_scalar``); a string parameter
    keeps its text (``api_version = 4.0`` is "4.0")."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    kind = param.type
    if kind in ("string", "object"):
        return text
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("not a yes/no value")
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "dict":
        if text.startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("not key=value pairs")
        return {k.strip(): parse_scalar(v) for k, v in pairs}
    return parse_scalar(text)


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
