"""A generated Python function per prepared plan: the plan's steps as straight-line code.

`PreparedPlan.run_steps` interprets the plan — per step it unpacks a tuple, builds the argument
list from slot numbers (a list comprehension) and writes the results back by slot (a zip loop) —
~0.6 µs a step measured on the silero VAD, whose graphs run 30–100 steps in the 0.05–0.12 ms ONNX
Runtime takes for them.
`compile_plan` writes the same steps as the body of one function (`exec` of generated source):
every tensor is a local variable, every step a direct call of its (specialised or generic) op
function with the same context, argument list and attributes, constants and functions bound as
globals of the generated module. It calls exactly the functions `run_steps` calls, on the same
arguments, in the same order, so every tensor equals the interpreter's bit for bit; errors are
named as there, an unnamed output is dropped, an empty optional input is None.
`QSIM_ONNX_CODEGEN=0` (read when a model is prepared) keeps the interpreter.
"""

from __future__ import annotations

import os


def enabled() -> bool:
    return os.environ.get("QSIM_ONNX_CODEGEN", "1") != "0"


def _fit(values, n: int) -> list:
    """An op's result list padded with None to the step's n outputs (as `zip` leaves a slot unset)."""
    values = list(values)[:n]
    return values + [None] * (n - len(values))


def plan_source(plan) -> tuple[str, dict]:
    """The generated source of `run(ex, feeds, keep_all)` for `plan` and its globals."""
    from qsim.onnxrun.executor import OP_ERRORS, node_error

    g = {"OP_ERRORS": OP_ERRORS, "node_error": node_error, "_fit": _fit}
    lines = ["def run(ex, feeds, keep_all):", "    ov = dict(ex._fold_overflows)"]
    current: dict[int, str] = {}  # slot -> the expression holding its value now
    for slot, value in enumerate(plan.template):
        if value is not None:
            g[f"k{slot}"] = value
            current[slot] = f"k{slot}"
    for j, (name, slot) in enumerate(plan.input_slots):
        g[f"n{j}"] = name
        lines.append(f"    t{slot} = feeds[n{j}]")
        current[slot] = f"t{slot}"
    complete = True
    for j, (fn, ctx, attrs, ins, outs, missing) in enumerate(plan.steps):
        g[f"f{j}"], g[f"c{j}"], g[f"a{j}"] = fn, ctx, attrs
        if missing is not None:
            g[f"m{j}"] = f"input tensor {missing!r} is not produced by any earlier node"
            lines.append(f"    raise c{j}.error(m{j})")
            complete = False
            break
        args = ", ".join("None" if i == 0 else current.get(i, "None") for i in ins)
        lines += [f"    c{j}.overflows = 0", f"    c{j}.integer_node = False", f"    x = [{args}]", "    try:",
                  f"        r = f{j}(c{j}, x, a{j})"]
        kept = [(p, s) for p, s in enumerate(outs) if s > 1]  # 1: an unnamed output
        if len(outs) > 1:
            lines.append(f"        if len(r) != {len(outs)}: r = _fit(r, {len(outs)})")
        for p, s in kept:
            lines.append(f"        t{s} = r[{p}]")
            current[s] = f"t{s}"
        lines += ["    except OP_ERRORS as exc:", f"        raise node_error(exc, c{j}, x) from None",
                  f"    if c{j}.integer_node:", f"        ov[c{j}.name] = (c{j}.op_type, c{j}.overflows)"]
    if complete:
        lines.append("    ex.overflows = ov")
        outs = ", ".join(f"{_name(g, n)}: {current.get(s, 'None')}" for n, s in plan.output_slots)
        every = ", ".join(f"{_name(g, t)}: {current.get(s, 'None')}" for t, s in plan.all_slots)
        lines += ["    if keep_all:", f"        return {{{every}}} | {{{outs}}}", f"    return {{{outs}}}"]
    return "\n".join(lines) + "\n", g


def _name(g: dict, name: str) -> str:
    """A global holding the tensor name (names may hold any characters)."""
    key = g.setdefault("_names", {}).setdefault(name, f"s{len(g['_names'])}")
    g[key] = name
    return key


def compile_plan(plan):
    """The plan's steps as one generated function `run(ex, feeds, keep_all)` (see the module doc)."""
    src, g = plan_source(plan)
    g.pop("_names", None)
    code = compile(src, f"<qsim plan {id(plan):x}>", "exec")
    exec(code, g)
    run = g["run"]
    run.source = src
    return run
