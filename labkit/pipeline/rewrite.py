"""Small graph rewrites that make a graph quantizable."""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper


def _attr(node: onnx.NodeProto, name: str, default: float | int) -> float | int:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite ``Gemm(A, W, C)`` with a constant W as ``MatMul(A, W') + C``, in place.

    Only the plain Linear form (alpha = beta = 1, no transA) is rewritten; others are kept.
    Returns how many nodes were rewritten.
    """
    inits = {t.name: t for t in model.graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) > 1 else None
        plain = (
            w is not None
            and _attr(node, "alpha", 1.0) == 1.0
            and _attr(node, "beta", 1.0) == 1.0
            and _attr(node, "transA", 0) == 0
        )
        if not plain or w is None:
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(w)
        if _attr(node, "transB", 0):
            weight = weight.T.copy()
        wname = f"{w.name}__matmul"
        model.graph.initializer.append(numpy_helper.from_array(weight, wname))
        out = node.output[0]
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{out}__mm" if has_bias else out
        new_nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], wname], [mm_out], name=f"{node.name}__matmul"
            )
        )
        if has_bias:
            new_nodes.append(
                helper.make_node("Add", [mm_out, node.input[2]], [out], name=f"{node.name}__bias")
            )
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        used = {i for n in model.graph.node for i in n.input}
        keep = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return count
