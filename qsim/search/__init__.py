"""Hardware-aware mixed precision: per-layer assignments, sensitivities, an exact solver, autoquant.

    from qsim.search import expand, mixed_precision, autoquant
    a = expand("mnist_dwsep", {"conv*": "w4a8", "fc": "float"})     # per-layer assignment
    res = mixed_precision("mnist_dwsep", "bitfusion", budget="energy=0.5x")
    best = autoquant("mnist_dwsep", "zcu104", min_metric=0.95, minimize="energy")

Depends on `qsim.nets` (integer executor) and `qsim.hw` (cost model) only.
"""

from qsim.search.assign import Assignment, LayerChoice, expand, parse_choice, uniform
from qsim.search.solver import solve_brute, solve_greedy, solve_ilp


def __getattr__(name):   # the driver pulls in pandas / the cost model: import it on first use
    if name in ("mixed_precision", "autoquant", "evaluate_assignment", "Infeasible"):
        from qsim.search import front

        return getattr(front, name)
    raise AttributeError(name)


__all__ = ["Assignment", "Infeasible", "LayerChoice", "autoquant", "evaluate_assignment", "expand",
           "mixed_precision", "parse_choice", "solve_brute", "solve_greedy", "solve_ilp", "uniform"]
