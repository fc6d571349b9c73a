"""`qsim nets eval … --training ptq|qat|qat_kd`: the flags and the evaluator they select."""

from __future__ import annotations

TRAINING_FLAGS = ("epochs", "lr", "seed", "kd_lambda", "kd_temperature", "act_learning", "weight_decay")


def add_arguments(pe) -> None:
    pe.add_argument("--training", choices=("ptq", "qat", "qat_kd"), default=None,
                    help="ptq, qat (quantization-aware fine-tuning from the fp32 weights: LSQ/PACT step sizes, STE) "
                         "or qat_kd (QAT + distillation from the fp32 network); reports the integer-kernel metric, "
                         "the fake-quant metric and their top-1 agreement. Trained models are cached in "
                         "$QSIM_CACHE_DIR/qat")
    pe.add_argument("--epochs", type=int, default=None,
                    help="QAT epochs (default: the network's QAT recipe, else about 600 Adam steps over "
                         "the training split, at least 3)")
    pe.add_argument("--lr", type=float, default=None, help="QAT learning rate (default: the network's QAT recipe, else 1e-3)")
    pe.add_argument("--seed", type=int, default=None, help="QAT seed (default 0)")
    pe.add_argument("--kd-lambda", type=float, default=None, help="distillation weight λ (qat_kd: default 1.0)")
    pe.add_argument("--kd-temperature", type=float, default=None, help="distillation temperature T (default 4)")
    pe.add_argument("--weight-decay", type=float, default=None,
                    help="QAT L2 weight decay on the latent weights (default: the network's QAT recipe, else 0)")
    pe.add_argument("--act-learning", choices=("lsq", "pact"), default=None,
                    help="activation step-size learning: lsq (default) or pact")


def evaluator(args, evaluate):
    """`evaluate` itself without --training; otherwise `qsim.train.evaluate_trained` with the flags."""
    training = getattr(args, "training", None)
    extra = {k: getattr(args, k, None) for k in TRAINING_FLAGS}
    if training is None:
        given = [f"--{k.replace('_', '-')}" for k, v in extra.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} need --training qat or qat_kd")
        return evaluate
    defaults = {"ptq": "rtn", "act_mode": "static", "sparsity": None, "sparsity_pattern": None,
                "fine_tune_epochs": 0, "compress": None}
    others = [k for k, d in defaults.items() if getattr(args, k, d) not in (d, None)]
    if others:
        raise ValueError(f"--training does not combine with {', '.join('--' + o.replace('_', '-') for o in others)}")
    if getattr(args, "float_only", False):
        raise ValueError("--training needs a quantized network; drop --float-only")
    kwargs = {k: v for k, v in extra.items() if v is not None}

    def run(name, wspec, aspec, *, calib_size=256, policy="fp32_rne", acc_bits=32, overflow="wrap", eval_size=None,
            **_ignored):
        from qsim.train.qat import evaluate_trained

        return evaluate_trained(name, wspec, aspec, training, calib_size=calib_size, policy=policy,
                                acc_bits=acc_bits, overflow=overflow, eval_size=eval_size, **kwargs)

    return run
