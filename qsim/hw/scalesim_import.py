"""Turn a SCALE-Sim `.cfg` into a qsim `systolic_array` profile, so SCALE-Sim users bring their configs.

What maps (SCALE-Sim semantics, word = 1 byte as in SCALE-Sim's memory model):

* ``[architecture_presets] ArrayHeight × ArrayWidth`` → ``rows × cols``; ``Dataflow``
  (os/ws/is) → ``dataflow``; PEs are int8 (one-byte words).
* ``IfmapSramSzkB / FilterSramSzkB / OfmapSramSzkB`` (KiB) → three operand-disjoint,
  double-buffered SRAM levels holding inputs / weights / outputs. SCALE-Sim never lets
  an SRAM stall the array, so each gets what the array edge can use per cycle: one word
  per edge PE (max(rows, cols)) for the operand SRAMs, and for the ofmap SRAM the int32
  partial sums one edge reads back and rewrites (2 · 4 · max(rows, cols) bytes).
* ``[run_presets] InterfaceBandwidth``: ``USER`` → DRAM bandwidth = ``Bandwidth``
  words/cycle (the smallest, if a list) × clock; ``CALC`` (SCALE-Sim works out the
  bandwidth a stall-free run needs) → ``memory_stalls: false`` (memory never stalls the
  array, as in SCALE-Sim; bytes and energy are still counted) and, for the roofline, a DRAM
  that can feed every edge of the array each cycle (rows + cols inputs, max(rows, cols) outputs).

What SCALE-Sim does not have — a clock, a technology node, energies — comes from the
keyword arguments (energies from the technology tables of `qsim.hw.tech`) and is
listed under ``validation.assumed_not_measured``; keys with no qsim meaning (offsets,
request buffers, layouts, sparsity) are kept verbatim under ``validation.scalesim``.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from qsim.hw.schema import validate_profile_dict

DATAFLOWS = ("os", "ws", "is")
BANDWIDTH_MODES = ("CALC", "USER")
PSUM_BYTES = 4  # int32 partial sums, read back and rewritten between K folds (WS/IS)
DRAM_KIND = "DDR3"  # SCALE-Sim names no memory; DDR3 = the Horowitz/QKeras DRAM figure of the tech tables
_ARCH = "architecture_presets"
_RUN = "run_presets"


def read_scalesim_config(cfg_path: str | Path) -> dict:
    """Parse a SCALE-Sim config into a neutral dict (ints, dataflow, bandwidth mode, raw sections)."""
    path = Path(cfg_path)
    if not path.is_file():
        raise FileNotFoundError(f"SCALE-Sim config {str(path)!r} does not exist")
    parser = configparser.ConfigParser()  # what SCALE-Sim itself uses: 'key: value' or 'key = value'
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except configparser.Error as exc:
        raise ValueError(f"{path}: not a readable SCALE-Sim config: {exc}") from None

    def get(section: str, key: str) -> str:
        if not parser.has_section(section):
            raise ValueError(f"{path}: missing section [{section}] (needed for key {key!r})")
        if not parser.has_option(section, key):
            raise ValueError(f"{path}: missing key {key!r} in section [{section}]")
        return parser.get(section, key).strip()

    def positive(section: str, key: str) -> int:
        text = get(section, key)
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{path}: [{section}] {key} must be a positive integer, got {text!r}")
        return value

    cfg = {
        "run_name": parser.get("general", "run_name", fallback="").strip() or path.stem,
        "rows": positive(_ARCH, "ArrayHeight"),
        "cols": positive(_ARCH, "ArrayWidth"),
        "ifmap_sram_kb": positive(_ARCH, "IfmapSramSzkB"),
        "filter_sram_kb": positive(_ARCH, "FilterSramSzkB"),
        "ofmap_sram_kb": positive(_ARCH, "OfmapSramSzkB"),
        "dataflow": get(_ARCH, "Dataflow").lower(),
        "bandwidth_mode": get(_RUN, "InterfaceBandwidth").upper(),
        "bandwidth_words_per_cycle": None,
    }
    if cfg["dataflow"] not in DATAFLOWS:
        raise ValueError(f"{path}: [{_ARCH}] Dataflow is {get(_ARCH, 'Dataflow')!r}; allowed: {', '.join(DATAFLOWS)}")
    if cfg["bandwidth_mode"] not in BANDWIDTH_MODES:
        raise ValueError(f"{path}: [{_RUN}] InterfaceBandwidth is {get(_RUN, 'InterfaceBandwidth')!r}; "
                         f"allowed: {', '.join(BANDWIDTH_MODES)}")
    if cfg["bandwidth_mode"] == "USER":
        text = get(_ARCH, "Bandwidth")
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise ValueError(f"{path}: [{_ARCH}] Bandwidth must be positive integer words/cycle "
                             f"(comma-separated), got {text!r}")
        cfg["bandwidth_words_per_cycle"] = min(values)  # SCALE-Sim's get_min_dram_bandwidth()
    cfg["sections"] = {s: dict(parser.items(s)) for s in parser.sections()}
    return cfg


def scalesim_config_to_profile(cfg_path: str | Path, clock_hz: float = 1e9, technology_nm: float = 45.0,
                               name: str | None = None) -> dict:
    """A validated qsim `systolic_array` profile dict from a SCALE-Sim `.cfg`.

    `clock_hz` and `technology_nm` are not in SCALE-Sim configs (it counts cycles only);
    the defaults (1 GHz, 45 nm to match the Horowitz energy tables) are recorded as assumed.
    """
    cfg = read_scalesim_config(cfg_path)
    rows, cols = cfg["rows"], cfg["cols"]
    edge = max(rows, cols)

    def sram(level: str, kb: int, holds: str, words_per_cycle: int) -> dict:
        size = kb * 1024
        return {"name": level, "capacity": size, "bandwidth_bytes_per_cycle": float(words_per_cycle), "holds": [holds]}

    if cfg["bandwidth_mode"] == "USER":
        words = cfg["bandwidth_words_per_cycle"]
        dram_note = f"USER: Bandwidth {words} words/cycle"
    else:
        words = rows + cols + edge
        dram_note = f"CALC (stall-free): rows + cols + max(rows, cols) = {words} words/cycle"
    profile = {
        "name": name or cfg["run_name"],
        "family": "systolic_array",
        "description": f"Imported from SCALE-Sim config {Path(cfg_path).name}: {rows}x{cols} "
                       f"{cfg['dataflow'].upper()}, DRAM {dram_note}",
        "clock": float(clock_hz),
        "technology_nm": float(technology_nm),
        "double_buffering": True,  # SCALE-Sim's scratchpads are double buffered
        # CALC: SCALE-Sim sizes the interface so the array never waits; traffic is still counted.
        "memory_stalls": cfg["bandwidth_mode"] != "CALC",
        "memory": [
            sram("ifmap_sram", cfg["ifmap_sram_kb"], "inputs", edge),
            sram("filter_sram", cfg["filter_sram_kb"], "weights", edge),
            sram("ofmap_sram", cfg["ofmap_sram_kb"], "outputs", 2 * PSUM_BYTES * edge),
        ],
        "dram": {"kind": DRAM_KIND, "bandwidth": float(words * clock_hz)},
        "systolic_array": {"rows": rows, "cols": cols, "dataflow": cfg["dataflow"], "pe_precisions": ["int8"]},
        "validation": {
            "scalesim": {"config": str(cfg_path), "bandwidth_mode": cfg["bandwidth_mode"],
                         "sections": cfg["sections"]},
            "assumed_not_measured": {"clock_hz": float(clock_hz), "technology_nm": float(technology_nm),
                                     "energies": "qsim.hw.tech tables (CACTI-fit SRAMs, DDR3 DRAM) "
                                                 "at the assumed node", "word_bytes": 1},
        },
        "notes": "SCALE-Sim counts cycles only; clock, node and energies are assumptions (see validation).",
    }
    validate_profile_dict(profile, source=str(cfg_path))
    return profile
