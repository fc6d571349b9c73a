"""Control flow: ONNX `If` (and `Size`, which the exported graphs that use `If` need).

Each branch of an `If` is a `qsim.onnxrun.executor.Subgraph`: the same executor machinery
as the top graph (its own initializers and folded constants, its reference interpreter and
its prepared plan). Tensors of enclosing graphs that a branch reads by name (outer-scope
references, also those of `If` nodes nested inside it) are found when the model loads and
appended to the `If` node's inputs, so the enclosing graph hands them over like any other
input — in the reference interpreter by name, in the prepared plan by slot. Those that are
constants of the enclosing graph (initializers, folded values) are constants of the branch
too, so that the branch folds what depends on them and its prepared ops see its weights;
should the enclosing graph recompute one (an initializer overridden by an input), the
branch runs on the values it is handed. The generic op runs the taken branch's reference
interpreter, the prepared one (`floatplan._spec_if`) the branch's prepared plan; both give the
same tensors bit for bit. The outputs are the taken branch's outputs as they are (ONNX
Runtime's CPU provider does the same: no casts).
"""

from __future__ import annotations

import numpy as np
from onnx import AttributeProto


def _subgraphs(node):
    """(attribute name, GraphProto) of every graph attribute of a node."""
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.name, a.g
        elif a.type == AttributeProto.GRAPHS:
            for g in a.graphs:
                yield a.name, g


def free_names(graph) -> list[str]:
    """Names a graph reads but neither defines nor receives: its outer-scope references
    (nested subgraphs' references included), in first-use order. Names are unique per scope,
    so a node output counts as defined wherever the node stands (graphs need not be sorted)."""
    defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer} | {""}
    defined |= {t.name for t in graph.sparse_initializer}
    defined |= {t for node in graph.node for t in node.output}
    out: dict[str, None] = {}
    for node in graph.node:
        used = list(node.input)
        for _, g in _subgraphs(node):
            used += free_names(g)
        for t in used:
            if t not in defined:
                out[t] = None
    for o in graph.output:
        if o.name not in defined:
            out[o.name] = None
    return list(out)


def plan_if(ex, name: str, node, attrs: dict) -> list[str]:
    """Check an If node's branches (when executor `ex` plans its graph); returns the outer-scope
    names they read, to append to the node's inputs (also kept in attrs["_outer"])."""
    n_out = len(node.output)
    outer: dict[str, None] = {}
    for key in ("then_branch", "else_branch"):
        g = attrs.get(key)
        if g is None:
            raise ValueError(f"node {name!r} (If): attribute {key} is missing")
        if len(g.output) != n_out:
            raise ValueError(f"node {name!r} (If): {key} has {len(g.output)} output(s), the node {n_out}")
        if len(g.input):
            raise ValueError(f"node {name!r} (If): {key} must not declare inputs, it has {len(g.input)}")
        outer.update(dict.fromkeys(free_names(g)))
    attrs["_outer"] = tuple(outer)
    return list(outer)


def build_branches(ex, name: str, attrs: dict, known: dict) -> None:
    """Both branches of an If as subgraphs of `ex` (attrs["_branches"]), built when `ex` folds its
    constants: `known` holds the enclosing graph's constants so far (initializers, folded values),
    which the branches take as their own constants (folded further, seen by the prepared ops)."""
    from qsim.onnxrun.executor import Subgraph

    branches = []
    for key in ("then_branch", "else_branch"):
        g = attrs[key]
        consts = {n: known[n] for n in free_names(g) if n in known}
        branches.append(Subgraph(g, ex, f"{name}/{key}", consts))
    attrs["_branches"] = tuple(branches)


def _condition(ctx, cond) -> bool:
    c = None if cond is None else np.asarray(cond)
    if c is None or c.dtype != np.bool_ or c.size != 1:
        got = "no tensor" if c is None else f"{c.dtype}{list(c.shape)}"
        raise ctx.error(f"the condition must be a 1-element bool tensor, got {got}")
    return bool(c.reshape(-1)[0])


def _run_branch(ctx, args, attrs, prepared: bool) -> list:
    branch = attrs["_branches"][0 if _condition(ctx, args[0]) else 1]
    env = dict(zip(attrs["_outer"], args[1:]))
    feeds = {n: env[n] for n in branch.input_names}
    if any(env[n] is not v for n, v in branch.outer_consts.items()):
        # an enclosing constant was recomputed (an initializer overridden by an input): those values
        feeds.update((n, env[n]) for n in branch.outer_consts)
        outs = branch.run(feeds, prepared=False)
    elif prepared:
        outs = branch.prepared.run(branch, feeds, False)
    else:
        outs = branch.run(feeds, prepared=False)
    ints = [c for _, c in branch.overflows.values()]
    if ints:
        ctx.integer_node = True
        ctx.overflows += int(sum(ints))
    return [outs[n] for n in branch.output_names]


def if_op(ctx, args, attrs):
    """The generic If: the taken branch through its reference interpreter."""
    return _run_branch(ctx, args, attrs, prepared=False)


def prepared_if(generic, node, attrs, consts, ex):
    """The prepared If: the taken branch through its prepared plan, what `_run_branch` does with the
    argument positions of each branch's inputs and constants worked out once (~3 µs less per If;
    the silero VAD graphs run five per chunk)."""
    if "_branches" not in attrs:
        return None
    pos = {n: i + 1 for i, n in enumerate(attrs["_outer"])}
    plans = []
    for branch in attrs["_branches"]:
        feeds = [(n, pos[n]) for n in branch.input_names]
        fixed = [(pos[n], v) for n, v in branch.outer_consts.items()]
        plans.append((branch, feeds, fixed, branch.output_names))

    def fast(ctx, args, attrs_):
        c = args[0]
        if type(c) is np.ndarray and c.dtype == np.bool_ and c.size == 1 and attrs_ is attrs:
            branch, feeds, fixed, outs = plans[0 if c.reshape(-1)[0] else 1]
            if all(args[i] is v for i, v in fixed):
                got = branch.prepared.run(branch, {n: args[i] for n, i in feeds}, False)
                if branch.overflows:
                    ctx.integer_node = True
                    ctx.overflows += int(sum(c for _, c in branch.overflows.values()))
                return [got[n] for n in outs]
        return _run_branch(ctx, args, attrs_, prepared=True)

    return fast


def size(ctx, args, attrs):
    return [np.array(args[0].size, np.int64)]


CONTROL_OPS = {"If": if_op, "Size": size}
