"""Imports point down: base -> cells, tasks -> core -> grids, sweeper -> analysis -> cli.

Read from the source with ``ast`` (every import, at module level or inside a function), so the
check costs no import and sees the lazy imports too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# a module's layer is its first dotted prefix found here; the rank orders the layers
LAYERS = {
    "rnncap.base": ("base", 0),
    "rnncap.cells": ("cells", 1),
    "rnncap.tasks": ("tasks", 1),
    "rnncap.core": ("core", 2),
    "rnncap.train_grid": ("grids", 3),
    "rnncap.tune_grid": ("grids", 3),
    "rnncap.generate": ("grids", 3),
    "hydra_plugins": ("sweeper", 3),
    "rnncap.experiments": ("experiments", 4),
    "rnncap.analysis": ("experiments", 4),
    "rnncap.cli": ("cli", 5),
    "rnncap": ("base", 0),  # the package itself imports nothing
}


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The absolute rnncap and hydra_plugins modules that ``path`` imports (relative ones too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
    return {m for m in found if m.split(".")[0] in ("rnncap", "hydra_plugins")}


def arrows() -> list[tuple[str, str]]:
    return [
        (module_name(path), target)
        for path in sorted(SRC.rglob("*.py"))
        for target in sorted(imports(path))
    ]


def test_every_module_is_in_a_layer_and_the_graph_is_not_empty():
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    assert {layer(m)[0] for m in modules} >= {"base", "cells", "tasks", "core", "cli"}
    assert len(arrows()) > 50  # the parser sees the imports


def test_no_import_runs_up_a_layer_and_cells_and_tasks_stay_apart():
    upward = []
    for source, target in arrows():
        (src_layer, src_rank), (dst_layer, dst_rank) = layer(source), layer(target)
        if src_layer == dst_layer:
            continue
        if dst_rank >= src_rank:  # up, or across (cells <-> tasks)
            upward.append(f"{source} ({src_layer}) imports {target} ({dst_layer})")
    assert not upward, "\n".join(upward)


def test_base_needs_no_torch():
    """The bottom layer is what analyses and the CLI import: no torch or Lightning in it."""
    heavy = ("torch", "pytorch_lightning", "lightning")
    for path in (SRC / "rnncap" / "base").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in heavy}, path.name


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check fails on the shape it guards against: a base module importing core."""
    package = tmp_path / "rnncap" / "base"
    package.mkdir(parents=True)
    (package / "bad.py").write_text("from ..core import run\nimport rnncap.cells.base\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    found = imports(package / "bad.py")
    assert found == {"rnncap.core", "rnncap.cells.base"}
    assert all(layer(t)[1] > layer("rnncap.base.bad")[1] for t in found)
