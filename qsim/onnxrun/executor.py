"""Run an ONNX graph node by node on qsim's integer kernels, and compare with ORT.

The graph is checked before anything runs: an op qsim does not implement is an
error naming the node and its op type, never a silently different answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qsim.onnxrun.contrib import MS_DOMAIN, MS_OPS
from qsim.onnxrun.control_flow import CONTROL_OPS, build_branches, plan_if
from qsim.onnxrun.f32_ops import F32_OPS, unsupported_reason
from qsim.onnxrun.float_ops import FLOAT_OPS
from qsim.onnxrun.ops import QUANT_OPS, NodeContext, register_constants
from qsim.onnxrun.plan import prepare
from qsim.onnxrun.shape_ops import SHAPE_OPS

OPS = {**QUANT_OPS, **FLOAT_OPS, **F32_OPS, **SHAPE_OPS, **CONTROL_OPS}
OVERFLOW_MODES = ("wrap", "saturate")
# Which ONNX Runtime CPU build qsim reproduces -> whether its u8 x s8 GEMMs saturate int16 pairs.
# avx2: x86-64 AVX2 without VNNI (vpmaddubsw); vnni: AVX-512 VNNI / AVX-VNNI (vpdpbusd, exact);
# arm64: NEON/SDOT kernels (exact); exact: mathematically exact integer arithmetic.
ORT_TARGETS = {"avx2": True, "vnni": False, "arm64": False, "exact": False}


def host_ort_target() -> str:
    """The ORT target of this machine, from qsim.kernels.cpu's model of ORT's CPU dispatch."""
    import platform

    from qsim.kernels.cpu import host_features, ort_pair_saturates

    if ort_pair_saturates():
        return "avx2"
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    feats = host_features()
    return "vnni" if feats.get("avx512vnni") or feats.get("avxvnni") else "exact"


def resolve_ort_target(target: str, pair_saturate16: bool | None = None) -> str:
    """`host` -> this machine's target; the legacy pair_saturate16 flag forces avx2 (True)
    or, when given as False with the host default, exact."""
    if target not in ORT_TARGETS and target != "host":
        raise ValueError(f"ort_target must be one of {['host', *ORT_TARGETS]}, got {target!r}")
    if pair_saturate16 is not None:
        if target not in ("host", "avx2" if pair_saturate16 else target):
            raise ValueError(f"pair_saturate16={pair_saturate16} contradicts ort_target={target!r}")
        if target == "host":
            return "avx2" if pair_saturate16 else "exact"
    return host_ort_target() if target == "host" else target
ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_DOMAINS = ("", "ai.onnx")
NO_FOLD = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")


def load_model(model_or_path) -> onnx.ModelProto:
    """A ModelProto from a path, raw bytes or a ModelProto; clear errors for anything else."""
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        model, where = onnx.ModelProto(), "the given bytes"
        try:
            model.ParseFromString(bytes(model_or_path))
        except Exception as exc:  # protobuf raises its own DecodeError
            raise ValueError(f"{where} are not an ONNX model ({exc})") from None
    elif isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file not found: {path}")
        where = str(path)
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise ValueError(f"{where} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    else:
        raise TypeError(f"model must be an onnx.ModelProto, bytes or a file path, got {type(model_or_path).__name__}")
    if not model.HasField("graph") or not model.graph.output:
        raise ValueError(f"{where} is not an ONNX model (no graph with outputs)")
    return model


OP_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError, OverflowError)


def _call(fn, ctx, args, attrs):
    """Run one op; any failure is reported as a ValueError naming the node (no traceback in the CLI)."""
    try:
        return fn(ctx, args, attrs)
    except OP_ERRORS as exc:
        raise node_error(exc, ctx, args) from None


def node_error(exc: Exception, ctx, args) -> Exception:
    """The error `_call` reports for an op's exception: a ValueError naming the node."""
    if isinstance(exc, ValueError):
        return exc if str(exc).startswith("node ") else ctx.error(str(exc))
    shapes = [None if a is None else f"{a.dtype}{list(a.shape)}" for a in args if hasattr(a, "shape") or a is None]
    return ctx.error(f"cannot run with inputs {shapes}: {type(exc).__name__}: {exc}")


def _opset_of(model, domain: str) -> int | None:
    for o in model.opset_import:
        if o.domain == domain or (domain in DEFAULT_DOMAINS and o.domain in DEFAULT_DOMAINS):
            return int(o.version)
    return None


def unsupported_nodes(model) -> list[tuple[str, str, str, int | None, str]]:
    """(node name, op type, domain, opset, reason) for every node qsim cannot run, the nodes
    of subgraphs (If branches) included, named `<If node>/<branch>/<node>`."""
    return _unsupported_in(model, model.graph, "")


def _unsupported_in(model, graph, prefix: str) -> list:
    out = []
    for i, n in enumerate(graph.node):
        name = prefix + (n.name or f"{n.op_type}_{i}")
        table = OPS if n.domain in DEFAULT_DOMAINS else MS_OPS if n.domain == MS_DOMAIN else {}
        if n.op_type not in table:
            out.append((name, n.op_type, n.domain or "ai.onnx", _opset_of(model, n.domain), "op not implemented"))
        else:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            why = unsupported_reason(n, attrs)
            if why:
                out.append((name, n.op_type, n.domain or "ai.onnx", _opset_of(model, n.domain), f"unsupported {why}"))
        for a in n.attribute:
            for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                out += _unsupported_in(model, g, f"{name}/{a.name}/")
    return out


def describe_unsupported(problems) -> str:
    """One line for the first unsupported node, a short tail for the rest (op types only)."""
    name, op, domain, opset, why = problems[0]
    msg = f"unsupported op {op} ({domain} opset {opset}) at node {name!r}: {why}"
    others = sorted({p[1] for p in problems[1:]} - {op})
    if len(problems) > 1:
        msg += f"; {len(problems) - 1} more unsupported node(s)"
        if others:
            msg += f" ({', '.join(others[:8])}{', ...' if len(others) > 8 else ''})"
    return msg


def _domain_note(node) -> str:
    return "" if node.domain in DEFAULT_DOMAINS else f" in domain {node.domain}"


def _elem_dtype(value_info) -> np.dtype | None:
    t = value_info.type.tensor_type
    return np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else None


def _topological(steps: list, available: set) -> list:
    """The steps in an order where each runs after the producers of its inputs, the outer-scope
    tensors of If branches included (ORT sorts the same way; `onnxruntime.quantization` writes
    an If before the node producing a tensor its branches read). A graph already in order keeps
    it; steps whose inputs never appear keep their place at the end (reported when they run)."""
    avail = set(available) | {""}
    out, pending = [], steps
    while pending:
        rest = []
        for step in pending:
            if all(t in avail for t in step[4]):
                out.append(step)
                avail.update(step[5])
            else:
                rest.append(step)
        if len(rest) == len(pending):
            return out + rest
        pending = rest
    return out


class OnnxExecutor:
    """Executes one model; `run()` fills `overflows` {node: (op_type, count)} for integer nodes.

    fuse_qdq  rewrite DequantizeLinear → Conv/MatMul → QuantizeLinear into QLinearConv /
              QLinearMatMul first, as ORT does when it deploys (see `qsim.onnxrun.qdq`);
              `fused` lists the rewritten nodes.
    """

    def __init__(self, model_or_path, *, acc_bits: int = 32, overflow: str = "wrap",
                 pair_saturate16: bool | None = None, fuse_qdq: bool = False, ort_target: str = "host"):
        if not isinstance(acc_bits, (int, np.integer)) or isinstance(acc_bits, bool):
            raise TypeError(f"acc_bits must be an int, got {acc_bits!r}")
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {list(OVERFLOW_MODES)}, got {overflow!r}")
        self.model = load_model(model_or_path)
        self.fused: list[str] = []
        if fuse_qdq:
            from qsim.onnxrun.qdq import fuse_qdq as fuse

            self.model, self.fused = fuse(self.model)
        self.ort_target = resolve_ort_target(ort_target, pair_saturate16)
        self.options = dict(acc_bits=int(acc_bits), overflow=overflow,
                            pair_saturate16=ORT_TARGETS[self.ort_target])
        graph = self.model.graph
        self.opset = next((o.version for o in self.model.opset_import if o.domain in DEFAULT_DOMAINS), 1)
        self.initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.inputs = [vi for vi in graph.input if vi.name not in self.initializers]
        self.input_names = [vi.name for vi in self.inputs]
        self.output_names = [o.name for o in graph.output]
        self.overflows: dict[str, tuple[str, int]] = {}
        problems = unsupported_nodes(self.model)
        if problems:
            raise ValueError(describe_unsupported(problems))
        self.steps = self._plan()
        self.folded_values: dict[str, np.ndarray] = {}
        self._folded, self._fold_deps, self._fold_overflows = self._fold()
        register_constants(list(self.initializers.values()) + list(self.folded_values.values()))
        self.prepared = prepare(self)

    def _op(self, node):
        return OPS[node.op_type] if node.domain in DEFAULT_DOMAINS else MS_OPS[node.op_type]

    @staticmethod
    def _node_name(i: int, node) -> str:
        return node.name or f"{node.op_type}_{i}"

    def _input_specs(self) -> tuple:
        """(allowed names, [(name, dtype or None, fixed dims or None)]) of the graph inputs, built once
        (protobuf fields and dtype conversions cost microseconds per call)."""
        specs = getattr(self, "_specs", None)
        if specs is None:
            rows = []
            for vi in self.inputs:
                fixed = None
                if vi.type.tensor_type.HasField("shape"):
                    fixed = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
                rows.append((vi.name, _elem_dtype(vi), fixed))
            specs = self._specs = (frozenset(self.input_names) | frozenset(self.initializers), rows)
        return specs

    def _check_inputs(self, inputs: dict) -> dict:
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict name -> array, got {type(inputs).__name__}")
        allowed, specs = self._input_specs()
        if not inputs.keys() <= allowed:
            raise ValueError(f"unknown input(s) {sorted(set(inputs) - allowed)}; the graph's inputs are "
                             f"{self.input_names}")
        feeds = {}
        for name, want, fixed in specs:
            if name not in inputs:
                raise ValueError(f"input {name!r} is missing; the graph's inputs are {self.input_names}")
            arr = np.asarray(inputs[name])
            if want is not None and arr.dtype != want:
                raise ValueError(f"input {name!r} must have dtype {want}, got {arr.dtype}")
            if fixed is not None and (len(fixed) != arr.ndim or
                                      any(f is not None and f != s for f, s in zip(fixed, arr.shape))):
                shown = [f if f is not None else "?" for f in fixed]
                raise ValueError(f"input {name!r} must have shape {shown}, got {list(arr.shape)}")
            feeds[name] = arr
        if len(inputs) > len(feeds):  # an input overriding its initializer
            for name in set(inputs) & set(self.initializers):
                feeds[name] = np.asarray(inputs[name])
        return feeds

    def _plan(self):
        """Per node: name, op function, attributes and tensor names, prepared once per model."""
        steps = []
        for i, node in enumerate(self.model.graph.node):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            name, ins = self._node_name(i, node), list(node.input)
            if node.op_type == "If" and node.domain in DEFAULT_DOMAINS:
                ins += plan_if(self, name, node, attrs)  # the outer-scope tensors its branches read
            steps.append((name, node, self._op(node), attrs, ins,
                          list(node.output), len([o for o in node.output if o])))
        return _topological(steps, set(self.initializers) | set(self.input_names))

    def _fold(self):
        """Run once, at load, every node fed only by initializers and Constant outputs (weight
        DequantizeLinear, shape arithmetic on constants, ...); runs then start from the results."""
        known = dict(self.initializers)
        folded, deps, overflows = set(), set(), {}
        for idx, (name, node, fn, attrs, ins, outs, n_out) in enumerate(self.steps):
            if "_outer" in attrs and "_branches" not in attrs:  # an If: its branches see the constants so far
                build_branches(self, name, attrs, known)
            if not all((t == "" or t in known) for t in ins) or node.op_type in NO_FOLD:
                continue
            ctx = NodeContext(name, node.op_type, self.opset, n_outputs=n_out,
                              constant=tuple(True for _ in ins), **self.options)
            values = _call(fn, ctx, [known[t] if t else None for t in ins], attrs)
            for t, v in zip(outs, values):
                if t:
                    known[t] = v
            folded.add(idx)
            deps.update(t for t in ins if t in self.initializers)
            if ctx.integer_node:
                overflows[name] = (node.op_type, ctx.overflows)
        self.folded_values = {t: v for t, v in known.items() if t not in self.initializers}
        return folded, deps, overflows

    def run(self, inputs: dict, *, keep_all: bool = False, prepared: bool = True) -> dict[str, np.ndarray]:
        """Graph outputs by name (every node output too with `keep_all`).

        By default the prepared plan (`qsim.onnxrun.plan`) runs; `prepared=False` runs the
        reference interpreter below (every node through its generic op, names looked up per
        call), which the prepared plan must equal bit for bit."""
        feeds = self._check_inputs(inputs)
        if prepared and len(feeds) == len(self.input_names):  # no initializer overridden
            return self.prepared.run(self, feeds, keep_all)
        env = dict(self.initializers)
        env.update(feeds)
        use_folded = not (self._fold_deps & set(feeds))  # an overridden initializer: recompute everything
        self.overflows = dict(self._fold_overflows) if use_folded else {}
        if use_folded:
            env.update(self.folded_values)
        for idx, (name, node, fn, attrs, ins, outs, n_out) in enumerate(self.steps):
            if use_folded and idx in self._folded:
                continue
            ctx = NodeContext(name, node.op_type, self.opset, n_outputs=n_out,
                              constant=tuple(t in self.initializers or t in self.folded_values for t in ins),
                              **self.options)
            args = []
            for t in ins:
                if t and t not in env:
                    raise ctx.error(f"input tensor {t!r} is not produced by any earlier node")
                args.append(env[t] if t else None)
            values = _call(fn, ctx, args, attrs)
            for t, v in zip(outs, values):
                if t:
                    env[t] = v
            if ctx.integer_node:
                self.overflows[name] = (node.op_type, ctx.overflows)
        if keep_all:
            return {t: env[t] for n in self.model.graph.node for t in n.output if t} | {
                n: env[n] for n in self.output_names}
        return {n: env[n] for n in self.output_names}


class Subgraph(OnnxExecutor):
    """A subgraph (an If branch) run by the executor machinery of its enclosing graph: the
    outer-scope tensors it reads (`control_flow.free_names`) are its inputs (`input_names`),
    or its constants when they are constants of the enclosing graph (`outer_consts`); what
    depends only on constants is folded at load, and it has a reference interpreter
    (`run(..., prepared=False)`) and a prepared plan like a model."""

    def __init__(self, graph, parent: OnnxExecutor, where: str, outer_consts: dict | None = None):
        from types import SimpleNamespace

        from qsim.onnxrun.control_flow import free_names

        self.model = SimpleNamespace(graph=graph)
        self.where = where
        self.fused = []
        self.ort_target = parent.ort_target
        self.options = parent.options
        self.opset = parent.opset
        self.outer_consts = dict(outer_consts or {})
        self.initializers = {**self.outer_consts, **{t.name: numpy_helper.to_array(t) for t in graph.initializer}}
        self.inputs = []
        self.input_names = [n for n in free_names(graph) if n not in self.outer_consts]
        self.output_names = [o.name for o in graph.output]
        self.overflows = {}
        self.steps = self._plan()
        self.folded_values = {}
        self._folded, self._fold_deps, self._fold_overflows = self._fold()
        register_constants(list(self.initializers.values()) + list(self.folded_values.values()))
        self.prepared = prepare(self)

    def _node_name(self, i: int, node) -> str:
        return f"{self.where}/{node.name or f'{node.op_type}_{i}'}"

    def _check_inputs(self, inputs: dict) -> dict:
        return inputs


def run_onnx(model_or_path, inputs: dict, *, acc_bits: int = 32, overflow: str = "wrap",
             pair_saturate16: bool | None = None, fuse_qdq: bool = False, ort_target: str = "host") -> dict[str, np.ndarray]:
    """Run the model on `inputs` (graph input name -> array); returns graph output name -> array."""
    ex = OnnxExecutor(model_or_path, acc_bits=acc_bits, overflow=overflow, pair_saturate16=pair_saturate16,
                      fuse_qdq=fuse_qdq, ort_target=ort_target)
    return ex.run(inputs)


def run_ort(model_or_path, inputs: dict, *, optimization: str = "disable") -> dict[str, np.ndarray]:
    """ONNX Runtime on CPU, one thread. `disable` runs the graph as written (no QDQ fusion)."""
    import onnxruntime as ort

    if optimization not in ORT_OPT_LEVELS:
        raise ValueError(f"optimization must be one of {list(ORT_OPT_LEVELS)}, got {optimization!r}")
    level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    model = load_model(model_or_path)
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feeds = {i.name: np.asarray(inputs[i.name]) for i in sess.get_inputs() if i.name in inputs}
    return dict(zip(names, sess.run(names, feeds)))


def run_ort_all(model_or_path, inputs: dict, *, optimization: str = "disable") -> dict[str, np.ndarray]:
    """ORT with every node output exposed as a graph output (graph as written)."""
    model = onnx.ModelProto.FromString(load_model(model_or_path).SerializeToString())
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:  # shape inference is best effort; ORT infers what is missing
        known = {}
    have = {o.name for o in model.graph.output}
    for n in model.graph.node:
        for t in n.output:
            if t and t not in have:
                vi = onnx.ValueInfoProto()
                if t in known:
                    vi.CopyFrom(known[t])
                else:
                    vi.name = t
                model.graph.output.append(vi)
                have.add(t)
    return run_ort(model, inputs, optimization=optimization)


def first_divergence(model, ours: dict, theirs: dict) -> list[dict]:
    """Node outputs that differ, in graph order: each with whether all its inputs agreed
    (the node where a divergence starts) and whether the tensor is an integer tensor."""
    model = load_model(model)
    rows = []
    bad: set[str] = set()
    for i, n in enumerate(model.graph.node):
        for t in n.output:
            if not t or t not in ours or t not in theirs:
                continue
            r = compare_outputs({t: ours[t]}, {t: theirs[t]})[0]
            if r["differing"]:
                bad.add(t)
                rows.append(dict(node=n.name or f"{n.op_type}_{i}", op=n.op_type, tensor=t,
                                 integer=np.asarray(ours[t]).dtype.kind in "iub", elements=r["elements"],
                                 differing=r["differing"], max_abs_diff=r["max_abs_diff"],
                                 starts_here=not any(x in bad for x in n.input if x)))
    return rows


def compare_outputs(ours: dict, theirs: dict) -> list[dict]:
    """Per output: differing elements (exact; NaN equals NaN) and max |difference|."""
    rows = []
    for name, a in ours.items():
        b = np.asarray(theirs[name])
        a = np.asarray(a)
        if a.shape != b.shape or a.dtype != b.dtype:
            n = int(max(a.size, b.size))
            rows.append(dict(output=name, elements=n, differing=n, max_abs_diff=float("inf"),
                             note=f"qsim {a.dtype}{list(a.shape)} vs ORT {b.dtype}{list(b.shape)}"))
            continue
        if a.dtype.kind in "iub":
            d = np.abs(a.astype(np.int64) - b.astype(np.int64))
            differ = d != 0
        else:
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            differ = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
            d = np.where(differ, np.abs(a64 - b64), 0.0)
        rows.append(dict(output=name, elements=int(a.size), differing=int(differ.sum()),
                         max_abs_diff=float(d.max()) if d.size else 0.0, note=""))
    return rows
