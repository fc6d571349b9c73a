"""Study driver: grid × caches → tidy DataFrame → Pareto fronts → plots."""

from qsim.study.pareto import pareto_mask, pareto_table
from qsim.study.runner import StudyResult, run_study
from qsim.study.spec import DesignConfig, StudySpec, StudySpecError, parse_study

__all__ = [
    "DesignConfig", "StudyResult", "StudySpec", "StudySpecError", "parse_study", "pareto_mask", "pareto_table",
    "run_study",
]
