"""Package-level contracts: layering (the core needs no torch), lazy sbi names, registry, version."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dic_sbi


def test_core_imports_without_torch():
    code = ("import sys, dic_sbi, dic_sbi.core, dic_sbi.spiketrains, dic_sbi.io; "
            "print(*(m in sys.modules for m in ('torch', 'sbi', 'zarr', 'dask')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False"] * 4


def test_sbi_names_are_reachable_from_the_top_level():
    from dic_sbi import sbi

    from dic_sbi import campaign

    for name in dic_sbi._SBI_NAMES:
        assert getattr(dic_sbi, name) is getattr(sbi, name)
    for name in dic_sbi._CAMPAIGN_NAMES:
        assert getattr(dic_sbi, name) is getattr(campaign, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dic_sbi.nope  # noqa: B018


def test_registry():
    assert dic_sbi.available_models() == ("da", "pospischil", "pospischil-fs", "pospischil-ib", "pospischil-lts", "pospischil-rs", "stg")
    assert dic_sbi.get_model("STG") is dic_sbi.get_model("stg")
    with pytest.raises(dic_sbi.InvalidInputError, match="already registered"):
        dic_sbi.register_model(dic_sbi.get_model("stg"))
    assert isinstance(dic_sbi.__version__, str)


def _import_graph() -> dict[str, set[str]]:
    """Every import between dic_sbi's modules (top-level, lazy and TYPE_CHECKING ones alike), read from the source.

    An import of a module's own ancestor package is left out: Python imports the package before the module anyway.
    """
    import ast
    from pathlib import Path

    root = Path(dic_sbi.__file__).parent
    mods = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            edges[m].update(c for c in names if c in mods and c != m and not m.startswith(c + "."))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = _import_graph()
    assert "dic_sbi.plots" in edges["dic_sbi.inference"]  # the graph sees lazy imports (inference draws plots)
    assert "dic_sbi.core.populations" in edges["dic_sbi.core.reachability"]
    assert _cycles(edges) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]  # the check can fail
