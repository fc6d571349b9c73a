import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.study.pareto import pareto_mask, pareto_table


def brute_force(costs: np.ndarray) -> np.ndarray:
    n = len(costs)
    return np.array([not np.any(np.all(costs <= costs[i], axis=1) & np.any(costs < costs[i], axis=1)) for i in range(n)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=40))
def test_front_equals_brute_force(points):
    df = pd.DataFrame(points, columns=["accuracy", "energy_j", "latency_s"])
    mask = pareto_mask(df, {"accuracy": "max", "energy_j": "min", "latency_s": "min"})
    costs = np.column_stack([-df["accuracy"], df["energy_j"], df["latency_s"]]).astype(float)
    np.testing.assert_array_equal(mask, brute_force(costs))


def test_nan_rows_never_on_front_and_scopes():
    df = pd.DataFrame({
        "profile": ["a", "a", "b", "b"], "accuracy": [0.9, np.nan, 0.8, 0.95], "energy_j": [1.0, 0.1, 0.5, 2.0],
    })
    mask = pareto_mask(df, {"accuracy": "max", "energy_j": "min"})
    assert mask.tolist() == [True, False, True, True]
    table = pareto_table(df, {"accuracy": "max", "energy_j": "min"})
    assert sorted(table["pareto_scope"].unique()) == ["overall", "profile:a", "profile:b"]
    assert len(table[table["pareto_scope"] == "profile:a"]) == 1
