"""qsim: bit-accurate quantized-network numerics and hardware cost models in one run."""

__version__ = "0.1.0"
