"""Find, load and validate hardware profiles (YAML files).

Where shipped profiles live: the YAML files are kept in the repository's `hw_profiles/`
and, identically, in the package data `qsim/data/hw_profiles/` (so an installed qsim has
them; `tests/test_hw_profiles.py` asserts the two copies are the same). Search order:
directories in $QSIM_HW_PROFILES (os.pathsep-separated), the repo's `hw_profiles/` when
running from a checkout, then the package data.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

from qsim.hw.schema import ProfileError, validate_profile_dict

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "data" / "hw_profiles"
REPO_DIR = Path(__file__).resolve().parents[2] / "hw_profiles"


def profile_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("QSIM_HW_PROFILES", "").split(os.pathsep) if p]
    dirs += [REPO_DIR, PACKAGE_DIR]
    return [d for d in dirs if d.is_dir()]


def list_profiles() -> list[str]:
    """Names of all shipped/discoverable profiles (file stems), sorted, first directory wins."""
    names: dict[str, Path] = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.yaml")):
            names.setdefault(f.stem, f)
    return sorted(names)


def find_profile(name_or_path: str | os.PathLike) -> Path:
    """A profile's file: an existing path, or a shipped name (case-insensitive, .yaml optional)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"profile file {str(p)!r} does not exist")
        return p
    stem = str(name_or_path).lower()
    for d in profile_dirs():
        for f in d.glob("*.yaml"):
            if f.stem.lower() == stem:
                return f
    raise FileNotFoundError(f"no hardware profile named {str(name_or_path)!r}; known profiles: "
                            f"{', '.join(list_profiles())} (or give a path to a YAML file)")


def read_profile_file(path: Path):
    """Parse and validate one YAML file; ProfileError on any problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read profile {str(path)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(str(path), [("", f"not valid YAML: {exc}")]) from None
    return validate_profile_dict(data, str(path))


@lru_cache(maxsize=128)
def _cached(path: str, mtime: float):
    return read_profile_file(Path(path))


def load_profile(name_or_path):
    """A validated profile object from a shipped name or a YAML path (cached by file + mtime).

    Profile objects (already loaded) are returned unchanged.
    """
    if hasattr(name_or_path, "family") and hasattr(name_or_path, "clock"):
        return name_or_path
    path = find_profile(name_or_path)
    return _cached(str(path.resolve()), path.stat().st_mtime)


def dump_profile_yaml(data: dict) -> str:
    """YAML text of a profile dict (as written by import-scalesim / calibrate-host)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
