"""The `qsim` command: a thin layer over the public API.

Each feature package owns its sub-commands in a `commands` module exposing
`register(subparsers)`; every sub-parser sets `func(args) -> int`. This file only
collects them, so adding a command never means editing logic here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import qsim

# Modules that contribute sub-commands (each has `register(subparsers)`).
COMMAND_MODULES: list[str] = [
    "qsim.demo",
    "qsim.hw.commands",
    "qsim.study.commands",
    "qsim.onnxrun.commands",
    "qsim.nets.commands",
    "qsim.validate.commands",
    "qsim.search.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qsim",
        description="Bit-accurate quantized-network simulator and hardware design-space explorer.",
    )
    from qsim.kernels.cpu import backend

    parser.add_argument("--version", action="version",
                        version=f"qsim {qsim.__version__} (integer kernels: {backend()})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`qsim simulate … | head`): stop quietly, as `cat` does. Point stdout
        # at /dev/null so the interpreter's final flush does not raise a second time.
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # User-facing errors carry their own explanation; a traceback would only hide it.
        print(f"qsim {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
