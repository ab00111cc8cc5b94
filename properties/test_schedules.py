"""The Schedule object's own contract (docs/math.md §2): a table its accessor returns is the
caller's copy (changing it leaves the schedule as it was), and the index conversions are the exact
maps t = i + 1 and i = t - 1.
"""

import numpy as np
import pytest

import reference as ref

SCHEDULES = [ref.linear(10), ref.cosine(7), ref.zero_terminal_snr(ref.linear(5)), ref.linear(1)]
TABLES = ["beta", "log_beta", "alpha", "log_alpha", "alpha_bar", "log_alpha_bar", "one_minus_alpha_bar",
          "log_one_minus_alpha_bar", "alpha_bar_prev", "one_minus_alpha_bar_prev", "posterior_coef_x0",
          "posterior_coef_xt", "beta_tilde", "log_beta_tilde_clipped"]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s.name}-T{s.T}")
def test_a_table_returned_is_the_callers_copy(schedule, table):
    values = getattr(schedule, table)()
    before = values.copy()
    values[...] = 0.5
    assert np.array_equal(getattr(schedule, table)(), before, equal_nan=True)
    at_1 = getattr(schedule, table)(np.array([1]))
    at_1[...] = 0.25
    assert np.array_equal(getattr(schedule, table)(np.array([1])), before[:1], equal_nan=True)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s.name}-T{s.T}")
def test_index_conversions_are_t_equals_i_plus_one(schedule):
    i = np.arange(schedule.T)
    assert np.array_equal(schedule.t_from_index(i), i + 1)
    assert np.array_equal(schedule.index_from_t(i + 1), i)
    assert schedule.t_from_index(schedule.T - 1) == schedule.T and schedule.index_from_t(1) == 0
