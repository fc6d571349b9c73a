"""The NumPy trainer: float training (`core`), quantization-aware training with LSQ/PACT and
knowledge distillation (`qat`), export of the trained model to qsim's integer kernels (`deploy`).

    from qsim.train import QATConfig, evaluate_trained
    res = evaluate_trained("mnist_cnn", QuantSpec(bits=4, granularity="channel"),
                           QuantSpec(bits=4, scheme="affine"), training="qat")
"""

from qsim.train.config import TrainConfig


def __getattr__(name):  # everything else loads lazily (qsim.nets imports this package's config)
    if name in ("train", "train_network"):
        from qsim.train import core

        return getattr(core, name)
    if name in ("QATConfig", "TRAININGS", "train_qat", "evaluate_trained", "kd_loss"):
        from qsim.train import qat

        return getattr(qat, name)
    raise AttributeError(name)


__all__ = ["QATConfig", "TRAININGS", "TrainConfig", "evaluate_trained", "kd_loss", "train", "train_network",
           "train_qat"]
