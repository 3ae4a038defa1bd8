"""Read qbench/tensorrt's source with ast: which ``trt.X.Y`` chains and which attribute names each
path (v10, v11, both) uses. A module sets ``TRT_PATH = "v10"`` when all of it is one path; a
function whose name ends in ``_v10``/``_v11`` is that path; everything else must work on both."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "qbench" / "tensorrt"


def _root_chain(node: ast.Attribute) -> list[str] | None:
    parts = []
    cur = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    parts.reverse()
    if isinstance(cur, ast.Name) and cur.id == "trt":
        return parts
    if isinstance(cur, ast.Name) and cur.id == "self" and parts and parts[0] == "trt":
        return parts[1:]
    return None


def scan() -> dict[str, dict[str, set]]:
    """{path: {"chains": {tuple}, "attrs": {str}}}"""
    out = {p: {"chains": set(), "attrs": set()} for p in ("both", "v10", "v11")}
    for file in sorted(PKG.glob("*.py")):
        tree = ast.parse(file.read_text(), filename=str(file))
        module_path = "both"
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "TRT_PATH" for t in stmt.targets):
                module_path = ast.literal_eval(stmt.value)
        _visit(tree, module_path, out)
    return out


def _visit(node, path, out):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if node.name.endswith("_v10"):
            path = "v10"
        elif node.name.endswith("_v11"):
            path = "v11"
    if isinstance(node, ast.Attribute):
        chain = _root_chain(node)
        parent_chain = chain is not None
        if chain:
            out[path]["chains"].add(tuple(chain))
        if not parent_chain:
            out[path]["attrs"].add(node.attr)
    for child in ast.iter_child_nodes(node):
        _visit(child, path, out)
