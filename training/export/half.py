"""Half precision: a LineGuard fp32 ONNX model turned into an fp16 one that a GPU scores on its tensor cores."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import onnx

from pipeline.contract import ModelMetadata
from pipeline.errors import MetadataError
from training.export.metadata import write_metadata

REDUCTIONS = frozenset(
    ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp")
)


def to_float16(proto: onnx.ModelProto, score_head_fp32: bool = True) -> onnx.ModelProto:
    """A float16 copy of a LineGuard fp32 model, its metadata carried over with `precision="fp16"`; `proto` is left
    as it is. The input `image` and every output stay float32, so the line feeds and reads every file alike.

    With `score_head_fp32` the score head (`score_head`: the first reduction on the way to the map and the score, and
    everything after it) stays float32: the default model's cosine distance multiplies two sums of squared features
    (about 69,000 on normal frames, above float16's largest value, 65,504), and a mean over a map rounds to 3 digits
    in float16. The head is a few nodes on feature maps and the 1-channel map; the convolutions, where the time goes,
    run in half precision either way.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel as GraphEditor

    metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
    if metadata.precision != "fp32":
        raise MetadataError("precision", f"{metadata.precision!r}: only an fp32 model converts to fp16")
    half = copy.deepcopy(proto)
    for index, node in enumerate(half.graph.node):  # the converter keeps nodes in float32 by name
        node.name = node.name or f"{node.op_type}_{index}"
    kept = [node.name for node in score_head(half.graph)] if score_head_fp32 else []
    with warnings.catch_warnings():
        # The converter warns for every weight it clamps into float16's range; a few tiny weights are expected.
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(
            half, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST), node_block_list=kept
        )
    # The converter inserts one cast per reader where a float16 tensor feeds two kept nodes (the same node twice,
    # which breaks single assignment), and appends its input casts after their readers; the checker wants neither.
    drop_repeated_nodes(half.graph)
    skip_round_trips(half.graph, set(kept))
    GraphEditor(half).topological_sort()
    write_metadata(half, replace(metadata, precision="fp16"))
    onnx.checker.check_model(half)
    return half


def score_head(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The reductions and every node that reads (directly or not) from one: where the anomaly map and the score are
    made from the model's errors."""
    produced_by_head: set[str] = set()
    head = []
    for node in graph.node:  # an exported graph is in topological order
        if node.op_type in REDUCTIONS or produced_by_head.intersection(node.input):
            head.append(node)
            produced_by_head.update(node.output)
    return head


def skip_round_trips(graph: onnx.GraphProto, kept: set[str]) -> None:
    """Let the kept nodes read one another's float32 results directly.

    The converter wraps each kept node on its own: its result is cast to float16 and cast back to float32 for the
    next kept node, which rounds it, and overflows it above 65,504, between every two steps of the head.
    """
    producer = {out: node for node in graph.node for out in node.output}
    # float16 copy -> the kept node's float32 result it was cast from
    rounded = {
        node.output[0]: node.input[0]
        for node in graph.node
        if cast_to(node) == onnx.TensorProto.FLOAT16
        and node.input[0] in producer
        and producer[node.input[0]].name in kept
    }
    outputs = {value.name for value in graph.output}
    alias = {}
    for node in graph.node:
        if cast_to(node) == onnx.TensorProto.FLOAT and node.input[0] in rounded:
            if node.output[0] in outputs:
                node.input[0] = rounded[node.input[0]]  # a float32 -> float32 cast: the graph's output as it was
            else:
                alias[node.output[0]] = rounded[node.input[0]]
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = alias.get(name, name)
    drop_unread_casts(graph)


def cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next(attr.i for attr in node.attribute if attr.name == "to")


def drop_unread_casts(graph: onnx.GraphProto) -> None:
    """Remove the casts whose result nothing reads any more (repeatedly: a cast may feed only another)."""
    while True:
        read = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
        unread = [node for node in graph.node if node.op_type == "Cast" and node.output[0] not in read]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def drop_repeated_nodes(graph: onnx.GraphProto) -> None:
    """Remove the exact copies of an earlier node (same op, inputs, outputs and attributes)."""
    seen: set[bytes] = set()
    kept = []
    for node in graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
