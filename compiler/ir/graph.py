"""An immutable graph: typed inputs, ops in topological order, named outputs."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .ops import Conv, Dense, IRError, Op, Softmax
from .types import TensorType


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[tuple[str, TensorType], ...]
    ops: tuple[Op, ...]
    outputs: tuple[str, ...]
    types: dict[str, TensorType] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        types = dict(self.inputs)
        for op in self.ops:
            missing = [i for i in op.inputs if i not in types]
            if missing:
                raise IRError(f"{op.kind} %{op.out}: input %{missing[0]} is not defined before it")
            if op.out in types:
                raise IRError(f"{op.kind} %{op.out}: value defined twice")
            types[op.out] = op.result_type([types[i] for i in op.inputs])
        for out in self.outputs:
            if out not in types:
                raise IRError(f"graph output %{out} is not defined")
        object.__setattr__(self, "types", types)

    def producer(self, value: str) -> Op | None:
        return next((op for op in self.ops if op.out == value), None)

    def consumers(self, value: str) -> list[Op]:
        return [op for op in self.ops if value in op.inputs]

    def with_ops(self, ops, outputs=None) -> "Graph":
        """A new graph with these ops; values no output depends on are dropped."""
        outputs = tuple(outputs or self.outputs)
        live = set(outputs)
        kept = []
        for op in reversed(list(ops)):
            if op.out in live:
                kept.append(op)
                live.update(op.inputs)
        return replace(self, ops=tuple(reversed(kept)), outputs=outputs)

    def on_host(self, op: Op) -> bool:
        """Everything before the first weight layer (float pre-processing, input quantizers) and
        a final Softmax run on the host, exactly as the ONNX model does; the rest is hardware."""
        first = next((i for i, o in enumerate(self.ops) if isinstance(o, (Dense, Conv))), len(self.ops))
        return isinstance(op, Softmax) or self.ops.index(op) < first
