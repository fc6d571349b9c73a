"""Validation against published silicon and simulators: `qsim validate`.

    from qsim.validate import validation_table, render_table, KNOWN_MISSES
    rows = validation_table()   # list of dicts: name, source, quantity, unit, published, qsim, ratio, tolerance, ok
"""

from qsim.validate.known_misses import KNOWN_MISSES
from qsim.validate.table import FIELDS, render_table, validation_table

__all__ = ["FIELDS", "KNOWN_MISSES", "render_table", "validation_table"]
