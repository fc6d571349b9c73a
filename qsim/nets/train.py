"""Moved to `qsim.train.core` (the NumPy trainer package); this name stays for old imports."""

from qsim.train.core import (TrainConfig, accuracy_of, loss_and_grads, save_weights, softmax_xent,  # noqa: F401
                             train, train_network)
