"""The package's layers: no import loops (lazy imports count), the model imports no layer
above it, the core never imports the CLI, and the CLI holds no lifecycle policy.

cli -> operations -> lifecycle, setup (playbook, inventory) -> cloud, ssh -> cluster, store
"""
from __future__ import annotations

import ast
from pathlib import Path

import elasticcluster

PACKAGE = Path(elasticcluster.__file__).resolve().parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every elasticcluster module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_graph_sees_lazy_imports():
    edges = graph()
    # operations imports ssh_keys inside a function only
    assert "elasticcluster.ssh_keys" in edges["elasticcluster.operations"]
    assert "elasticcluster.lifecycle" in edges["elasticcluster.operations"]


def test_no_import_loops():
    edges = graph()
    loops = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in reachable(edges, b)})
    assert loops == []


def test_the_model_and_the_store_import_no_layer_above_them():
    edges = graph()
    below = {"elasticcluster.exceptions", "elasticcluster.store", "elasticcluster.cluster",
             "elasticcluster.paths", "elasticcluster.tags", "elasticcluster.limits", "elasticcluster"}
    for module in ("elasticcluster.cluster", "elasticcluster.store"):
        assert reachable(edges, module) <= below, (module, reachable(edges, module) - below)


def test_the_core_never_imports_the_cli():
    edges = graph()
    for module in edges:
        if not module.startswith(("elasticcluster.cli", "elasticcluster.__main__")):
            assert not any(t.startswith("elasticcluster.cli") for t in reachable(edges, module)), module


def test_the_cli_holds_no_lifecycle_policy():
    """The CLI runs the cluster operations; it never locks, saves, deletes or drives the cloud."""
    edges = graph()
    for module, path in modules().items():
        if not module.startswith("elasticcluster.cli"):
            continue
        assert "elasticcluster.lifecycle" not in edges[module], module
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not (
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "operations"):
                assert node.func.attr not in ("lock", "save", "save_or_update", "delete", "remove_node",
                                              "terminate_instances", "provision"), (module, node.lineno)
