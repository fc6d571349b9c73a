"""Execute a TFLite model's main subgraph, keeping resource variables between invocations
(streaming models: VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE, initialised by CALL_ONCE)."""

from __future__ import annotations

import numpy as np

from qsim.tflite.model import load_model
from qsim.tflite.ops import OPS, PATHS, STATE_OPS, OpContext


def load_tflite(path_or_bytes):
    return load_model(path_or_bytes)


def _unsupported(graphs) -> list[tuple[int, str, bool]]:
    bad = []
    for g in graphs:
        for op in g.ops:
            if op.op not in OPS and op.op not in STATE_OPS:
                bad.append((op.index, op.op, op.custom))
    return bad


class TfliteRunner:
    """`invoke(inputs)` runs subgraph 0 once; variables persist until `reset()`.

    `prepared=True` (the default) runs subgraph 0 as closures prepared once per model and path
    (`qsim.tflite.prepared`); `prepared=False` is the straightforward op-by-op interpreter kept as the
    reference (tests/test_tflite.py checks both give the same bits on every tensor)."""

    def __init__(self, path_or_bytes, *, path: str = "reference", prepared: bool = True):
        if path not in PATHS:
            raise ValueError(f"path must be one of {list(PATHS)}, got {path!r}")
        self.path = path
        self.graphs = load_model(path_or_bytes)
        bad = _unsupported(self.graphs)
        if bad:
            idx, op, custom = bad[0]
            kind = "custom op" if custom else "op"
            more = f"; {len(bad) - 1} more unsupported operator(s)" if len(bad) > 1 else ""
            raise ValueError(f"unsupported TFLite {kind} {op} at operator {idx}{more}")
        self.main = self.graphs[0]
        self.input_names = [self.main.tensors[i].name for i in self.main.inputs]
        self.output_names = [self.main.tensors[i].name for i in self.main.outputs]
        self.reset()
        self.prepared = None
        if prepared:
            from qsim.tflite.prepared import PreparedGraph

            self.prepared = PreparedGraph(self)

    def reset(self) -> None:
        self.variables: dict = {}
        self._initialised: set = set()

    def _check_inputs(self, inputs: dict) -> dict:
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict name -> array, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; the model's inputs are {self.input_names}")
        feeds = {}
        for i in self.main.inputs:
            t = self.main.tensors[i]
            if t.name not in inputs:
                raise ValueError(f"input {t.name!r} is missing; the model's inputs are {self.input_names}")
            a = np.asarray(inputs[t.name])
            if a.dtype != np.dtype(t.dtype):
                raise ValueError(f"input {t.name!r} must have dtype {np.dtype(t.dtype)}, got {a.dtype}")
            if tuple(a.shape) != tuple(t.shape):
                raise ValueError(f"input {t.name!r} must have shape {list(t.shape)}, got {list(a.shape)}")
            feeds[i] = a
        return feeds

    def _run(self, gi: int, env: dict, trace: dict | None) -> None:
        g = self.graphs[gi]
        for op in g.ops:
            ctx = OpContext(op.index, op.op, self.path)
            if op.op == "VAR_HANDLE":
                key = (op.options.Container() or b"", op.options.SharedName() or b"")
                env[op.outputs[0]] = ("resource", key)
                continue
            if op.op == "CALL_ONCE":
                sub = op.options.InitSubgraphIndex()
                if sub not in self._initialised:
                    self._initialised.add(sub)
                    self._run(sub, {}, None)
                continue
            if op.op == "READ_VARIABLE":
                key = env[op.inputs[0]][1]
                if key not in self.variables:
                    raise ctx.error(f"variable {key[1].decode()!r} is read before it is assigned")
                env[op.outputs[0]] = self.variables[key].copy()
                continue
            if op.op == "ASSIGN_VARIABLE":
                key = env[op.inputs[0]][1]
                value = env[op.inputs[1]] if op.inputs[1] in env else g.tensors[op.inputs[1]].data
                self.variables[key] = np.array(value, copy=True)
                continue
            args, tensors = [], []
            for i in op.inputs:
                if i < 0:
                    args.append(None)
                    tensors.append(None)
                    continue
                t = g.tensors[i]
                v = env.get(i, t.data)
                if v is None:
                    raise ctx.error(f"input tensor {t.name!r} has no value")
                args.append(v)
                tensors.append(t)
            outs = [g.tensors[i] for i in op.outputs]
            try:
                values = OPS[op.op](ctx, args, tensors, outs, op.options)
            except ValueError as exc:
                if str(exc).startswith("operator "):
                    raise
                raise ctx.error(str(exc)) from None
            for i, v in zip(op.outputs, values):
                env[i] = v
                if trace is not None:
                    trace[g.tensors[i].name] = v

    def invoke(self, inputs: dict, *, keep_all: bool = False) -> dict[str, np.ndarray]:
        env = self._check_inputs(inputs)
        if self.prepared is not None:
            slots = self.prepared.run(env)
            outs = {self.main.tensors[i].name: slots[i] for i in self.main.outputs}
            if not keep_all:
                return outs
            return {**{name: slots[i] for name, i in self.prepared.traced}, **outs}
        trace = {} if keep_all else None
        self._run(0, env, trace)
        outs = {self.main.tensors[i].name: env[i] for i in self.main.outputs}
        return {**trace, **outs} if keep_all else outs


def run_litert(model_path: str, steps: list[dict], *, path: str = "reference", keep_all: bool = False) -> list[dict]:
    """LiteRT's interpreter on the same input sequence (one dict per invocation)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"reference": OpResolverType.BUILTIN_REF,
                "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                "xnnpack": OpResolverType.AUTO}[path]
    it = Interpreter(model_path=str(model_path), experimental_op_resolver_type=resolver, num_threads=1,
                     experimental_preserve_all_tensors=keep_all)
    it.allocate_tensors()
    ins = {d["name"]: d["index"] for d in it.get_input_details()}
    results = []
    for feeds in steps:
        for name, v in feeds.items():
            it.set_tensor(ins[name], v)
        it.invoke()
        if keep_all:
            got = {}
            for d in it.get_tensor_details():
                if np.dtype(d["dtype"]) not in (np.int8, np.uint8, np.int16, np.int32) or not len(d["shape"]):
                    continue  # resource handles (reading them crashes LiteRT) and scalars
                try:
                    got[d["name"]] = it.get_tensor(d["index"]).copy()
                except ValueError:  # tensors without data
                    pass
        else:
            got = {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}
        results.append(got)
    return results
