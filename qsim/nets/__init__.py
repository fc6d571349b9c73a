"""Runnable networks with real weights on real data, float and quantized executors.

    from qsim.nets import list_networks, get_network, evaluate
    res = evaluate("digits_cnn", wspec=QuantSpec(bits=8, granularity="channel"),
                   aspec=QuantSpec(bits=8, scheme="affine"))
"""

from qsim.nets.registry import Network, get_network, list_networks, register_network


def evaluate(name, wspec=None, aspec=None, **kwargs) -> dict:
    """Float and quantized metrics of network `name` (see `qsim.nets.quant_exec.evaluate`)."""
    from qsim.nets.quant_exec import evaluate as _evaluate

    return _evaluate(name, wspec, aspec, **kwargs)


__all__ = ["Network", "evaluate", "get_network", "list_networks", "register_network"]
