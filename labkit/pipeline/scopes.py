"""Which PyTorch module an ONNX node came from, read from what the exporters leave behind.

The dynamo exporter records each node's module path in the ``pkg.torch.onnx.name_scopes``
metadata (``['', 'encoder', 'layer.0', 'linear']``: the root, the modules, then the op); the
TorchScript exporter names nodes after the scope (``/encoder/layer.0/Gemm``). Nodes that
labkit's rewrites split (``node_linear__matmul``) keep their original name before ``__``.
Used by the quantization-sensitivity blocks and the analyzer's per-layer CPU time.
"""

from __future__ import annotations

import ast

import onnx

__all__ = ["module_of", "module_paths"]


def _from_metadata(node: onnx.NodeProto) -> str | None:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and len(scopes) >= 2:
                names = [str(s) for s in scopes[1:-1] if s]
                # Nested scopes are recorded as full paths (``h.0``, ``h.0.attn``), a
                # top-level one as its name: the innermost is the module either way.
                if all(b.startswith(a + ".") for a, b in zip(names, names[1:])):
                    return names[-1] if names else ""
                return ".".join(names)
    return None


def module_of(node: onnx.NodeProto) -> str | None:
    """The dotted module path (``encoder.layer.0``), ``""`` for the root, None if unknown."""
    found = _from_metadata(node)
    if found is not None:
        return found
    parts = [p for p in node.name.split("/") if p]
    if node.name.startswith("/") and len(parts) >= 2:
        return ".".join(parts[:-1])
    return None


def module_paths(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> module path for every node whose module is known (rewritten names too)."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        path = module_of(node)
        if path is not None and node.name:
            out[node.name] = path
    return out


def lookup(paths: dict[str, str], node_name: str) -> str | None:
    """The module of ``node_name``, following labkit's ``name__suffix`` rewrites."""
    if node_name in paths:
        return paths[node_name]
    return paths.get(node_name.split("__")[0])
