"""The `--ptq` / `--act-mode` flags of `qsim nets eval` (wired into `qsim/nets/commands.py`)."""

from __future__ import annotations

from qsim.ptq import ACT_MODES, METHODS


def add_arguments(parser) -> None:
    parser.add_argument("--ptq", default="rtn",
                        help=f"post-training quantization method(s), combined with '+': {'|'.join(METHODS)} "
                             f"(default rtn: round to nearest)")
    parser.add_argument("--act-mode", choices=ACT_MODES, default="static",
                        help="activation ranges: static (calibrated), dynamic_tensor or dynamic_token (at run time)")
    parser.add_argument("--ptq-seed", type=int, default=0, help="seed of the PTQ methods (default 0)")


def evaluator(args, evaluate):
    """`evaluate` with the PTQ flags of `args`: RTN/static runs the usual path and reports
    config.ptq = 'rtn', config.act_mode = 'static'; anything else runs `qsim.ptq.evaluate_ptq`."""
    from qsim.ptq import evaluate_ptq, parse_ptq

    ptq, act_mode = getattr(args, "ptq", "rtn"), getattr(args, "act_mode", "static")
    methods = parse_ptq(ptq)

    def run(name, wspec, aspec, **kw):
        if not methods and act_mode == "static":
            res = evaluate(name, wspec, aspec, **kw)
            res["config"]["ptq"], res["config"]["act_mode"] = "rtn", "static"
            return res
        other = {k: v for k, v in kw.items() if k in ("sparsity", "sparsity_pattern", "compress") and v is not None}
        if other or kw.get("fine_tune_epochs"):
            raise ValueError(f"--ptq/--act-mode do not combine with pruning options ({sorted(other) or ['fine_tune_epochs']})")
        keep = {k: v for k, v in kw.items() if k in ("calib_size", "policy", "acc_bits", "overflow", "eval_size")}
        return evaluate_ptq(name, wspec, aspec, ptq=ptq, act_mode=act_mode, seed=getattr(args, "ptq_seed", 0), **keep)

    return run
