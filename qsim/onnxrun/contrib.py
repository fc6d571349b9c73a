"""ONNX Runtime's `com.microsoft` contrib ops of the QOperator format, with ORT's CPU semantics."""

from __future__ import annotations

MS_DOMAIN = "com.microsoft"
MS_OPS: dict = {}
