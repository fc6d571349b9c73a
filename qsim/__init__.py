"""qsim: bit-accurate quantized-network numerics and hardware cost models in one run."""

__version__ = "0.1.0"


def run_study(spec, out_dir=None, **kwargs):
    """Run (or resume) a study from a YAML path or a dict; see `qsim.study.run_study`."""
    from qsim.study import run_study as _run_study

    return _run_study(spec, out_dir, **kwargs)
