"""The runnable networks: name → architecture, data set, training recipe, weights."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from qsim.nets import models
from qsim.train.config import TrainConfig
from qsim.workload import Workload

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "weights"


@dataclass(frozen=True)
class Network:
    """A network with real weights: `.name`, `.metric`, `.workload` (batch 1), `.arch`.

    Networks that are not sequential `Architecture`s (e.g. a transformer) set `evaluator`
    — called as `evaluator(wspec, aspec, **evaluate_kwargs)` and returning the same dict as
    `qsim.nets.evaluate` — and `workload_builder` (→ Workload), and leave `arch` None."""

    name: str
    dataset: str
    arch: models.Architecture | None
    train_config: TrainConfig | None
    description: str = ""
    metric: str = "accuracy"
    evaluator: Callable | None = None
    workload_builder: Callable | None = None
    params: dict | None = field(default=None, compare=False, repr=False)   # in-memory weights (e.g. from ONNX)
    # QAT defaults where the generic ones (about 600 Adam steps, lr 1e-3; qsim.train.qat) fall short
    qat_recipe: dict | None = field(default=None, compare=False, repr=False)

    @property
    def workload(self) -> Workload:
        if self.workload_builder is not None:
            return self.workload_builder()
        return self.arch.to_workload(batch=1)

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.npz"

    def weights(self) -> dict[str, np.ndarray]:
        """The committed fp32 weights (read once per process; arrays are read-only)."""
        if self.params is not None:
            return dict(self.params)
        return dict(_load_weights(self.name))

    def weights_meta(self) -> dict:
        return {} if self.params is not None else dict(_load_weights_meta(self.name))


_NETWORKS = {
    net.name: net for net in (
        Network("mnist_cnn", "mnist", models.mnist_cnn(), TrainConfig(epochs=8, batch_size=64, lr=3e-3),
                "MNIST-10k CNN: conv3x3/2 (16) → conv3x3/2 (32) → dense"),
        Network("mnist_dwsep", "mnist", models.mnist_dwsep(), TrainConfig(epochs=10, batch_size=64, lr=3e-3),
                "MNIST-10k depthwise-separable CNN: conv3x3/2 → depthwise 3x3/2 → pointwise 1x1 → dense"),
        Network("mnist_mlp", "mnist", models.mnist_mlp(),
                TrainConfig(epochs=15, batch_size=64, lr=2e-3, weight_decay=1e-4), "MNIST-10k MLP: 784 → 128 → 10"),
        Network("mnist1d_cnn", "mnist1d", models.mnist1d_cnn(),
                TrainConfig(epochs=150, batch_size=100, lr=1e-2),
                "mnist1d paper 1-D CNN: 3 strided convs (25 ch) → linear",
                qat_recipe={"epochs": 150, "lr": 3e-3, "weight_decay": 5e-4}),
        Network("digits_mlp", "digits", models.digits_mlp(), TrainConfig(epochs=40, batch_size=32, lr=3e-3),
                "scikit-learn digits MLP: 64 → 64 → 10"),
        Network("digits_cnn", "digits", models.digits_cnn(), TrainConfig(epochs=40, batch_size=32, lr=3e-3),
                "scikit-learn digits CNN: conv3x3 (16) → maxpool → conv3x3 (32) → maxpool → dense"),
        Network("fashion_cnn", "fashion_mnist", models.fashion_cnn(),
                TrainConfig(epochs=8, batch_size=64, lr=3e-3, weight_decay=5e-4),
                "Fashion-MNIST 13k CNN: conv3x3/2 (16) → conv3x3/2 (32) → dense 64 → dense"),
    )
}


def _minilm_evaluator(wspec, aspec, **kwargs) -> dict:
    from qsim.nets.minilm import evaluate_minilm

    return evaluate_minilm(wspec, aspec, **kwargs)


def _minilm_workload() -> Workload:
    from qsim.nets.minilm import workload

    return workload()


# The real pretrained transformer: weights from an optional package, its own NumPy executor.
_NETWORKS["minilm"] = Network(
    "minilm", "similarity", None, None,
    "all-MiniLM-L6-v2 sentence transformer (optional extra), SICK-R 1,000-pair subset, Spearman",
    metric="spearman", evaluator=_minilm_evaluator, workload_builder=_minilm_workload,
)


def _smollm2_evaluator(wspec, aspec, **kwargs) -> dict:
    from qsim.nets.smollm2 import evaluate_smollm2

    return evaluate_smollm2(wspec, aspec, **kwargs)


def _smollm2_workload() -> Workload:
    from qsim.nets.smollm2 import workload

    return workload()


# A real small causal LM (GGUF from an optional package); perplexity, lower is better.
_NETWORKS["smollm2"] = Network(
    "smollm2", "moby-dick", None, None,
    "SmolLM2-135M-Instruct causal LM (optional extra, GGUF Q4_1 dequantized), Moby-Dick perplexity",
    metric="perplexity", evaluator=_smollm2_evaluator, workload_builder=_smollm2_workload,
)


def register_network(net: Network) -> None:
    """Add a network (e.g. one with its own `evaluator`). A name is registered once per process:
    the executors cache per name, so replacing a network would serve stale results."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a qsim.nets.Network, got {type(net).__name__}")
    if net.name in _NETWORKS and _NETWORKS[net.name] is not net:
        raise ValueError(f"network {net.name!r} is already registered")
    if net.arch is None and net.evaluator is None:
        raise ValueError(f"network {net.name!r} needs an arch or an evaluator")
    _NETWORKS[net.name] = net


def list_networks() -> list[str]:
    """Names of the runnable networks."""
    return list(_NETWORKS)


def get_network(name: str) -> Network:
    """The network called `name`; an unknown name lists the known ones."""
    if isinstance(name, Network):
        return name
    if name not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; networks are: {', '.join(_NETWORKS)}")
    return _NETWORKS[name]


@functools.lru_cache(maxsize=None)
def _load_weights(name: str) -> tuple:
    net = get_network(name)
    path = net.weights_path
    if not path.exists():
        raise FileNotFoundError(f"weights of network {name!r} not found at {path}; run `qsim nets train {name}`")
    with np.load(path, allow_pickle=False) as d:
        params = {k: d[k] for k in d.files if k != "meta"}
    for op in net.arch.mac_ops:
        for key, shape in ((f"{op.name}.w", op.weight_shape), (f"{op.name}.b", op.weight_shape[:1])):
            if key not in params or params[key].shape != tuple(shape):
                got = params[key].shape if key in params else "missing"
                raise ValueError(f"weights file {path}: {key} must have shape {tuple(shape)}, got {got}; retrain "
                                 f"with `qsim nets train {name}`")
    for v in params.values():
        v.setflags(write=False)
    return tuple(params.items())


@functools.lru_cache(maxsize=None)
def _load_weights_meta(name: str) -> tuple:
    with np.load(get_network(name).weights_path, allow_pickle=False) as d:
        return tuple(json.loads(str(d["meta"])).items()) if "meta" in d.files else ()
