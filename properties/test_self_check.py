"""Power of the suite: every deliberately broken variant of the reference is caught.

Each mutant of properties.support.mutants (a realistic bug: abar_{t-1} off by one, a missing
square root, a KL with swapped arguments, nats reported as bits, ...) is installed in turn, and
the tests of this suite named in `CATCHERS` (by node id) are run against the broken reference
(`properties.support.mutation`). A test *catches* a mutant when it fails with an AssertionError;
errors of other kinds are shown as E and do not count. The matrix is printed; each mutant must
be caught at least once, and no test may fail on the intact reference (the controls).
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.internal.reflection import function_digest

import reference as ref

from ddpm_verify import precision
from properties.support import mutation
from properties.support.mutants import MUTANTS

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, its module fixtures once
pytestmark = pytest.mark.xdist_group("self_check")

#: Hypothesis properties (run with the selfcheck profile) and exact oracle tests, by node id
PROPERTIES = [
    "test_forward.py::test_iterated_kernel_equals_closed_form_marginal",
    "test_forward.py::test_q_sample_is_mean_plus_sqrt_variance_times_noise",
    "test_posterior.py::test_bayes_identity_holds_pointwise",
    "test_posterior.py::test_noise_form_equals_x0_form_on_forward_samples",
    "test_parameterisations.py::test_v_round_trips",
    "test_parameterisations.py::test_score_from_eps_of_the_optimal_noise_is_the_gaussian_score",
    "test_gaussian.py::test_kl_equals_torch_kl_divergence",
    "test_gaussian.py::test_discretized_decoder_masses_sum_to_one",
    "test_elbo_identities.py::test_trajectory_log_likelihood_telescopes",
    "test_elbo_identities.py::test_kl_term_is_weighted_noise_error_plus_constant",
    "test_elbo_identities.py::test_prior_term_is_kl_of_forward_marginal_to_standard_normal",
    "test_seeds.py::test_erratum_seed003_2_6_L0_weight_has_no_extra_factor_2",
    "test_oracles.py::test_chain_gap_equals_log_likelihood_minus_elbo[0-10]",
    "test_oracles.py::test_mixture_log_prob_matches_scipy[0-2]",
    "test_oracles.py::test_mixture_tweedie_and_optimal_eps",
    "test_elbo_estimators.py::test_estimator_mean_matches_exact_neg_elbo[linear-50-kl]",
    "test_elbo_estimators.py::test_estimator_mean_matches_exact_neg_elbo[linear-50-trajectory]",
    "test_elbo_monte_carlo.py::test_estimators_match_exact_elbo_of_linear_gaussian_chain[25-kl-trajectory]",
]


def _precision_catchers() -> list[str]:
    """One test per precision measurement: its T = 10 case of each schedule family (or its first
    case where it has no schedule)."""
    return [f"test_precision.py::test_matches_exact[{name}-{case}]" for name, case in precision.small_cases()]


CATCHERS = _precision_catchers() + PROPERTIES


def _label(node_id: str) -> str:
    module, test = node_id.split("::")
    return f"{module.removeprefix('test_').removesuffix('.py')}:{test.removeprefix('test_')}"


@pytest.fixture(scope="module")
def matrix():
    outcomes = mutation.matrix(CATCHERS, MUTANTS)
    by_label = {_label(k.rsplit("/", 1)[-1]): v for k, v in outcomes.items()}
    controls = {name: o["control"] for name, o in by_label.items()}
    rows = {m.name: {name: o[m.name] for name, o in by_label.items()} for m in MUTANTS}
    return controls, rows


def test_controls_pass_on_the_intact_reference(matrix):
    controls, _ = matrix
    failing = [name for name, o in controls.items() if o != "."]
    assert not failing, f"tests failing on the intact reference: {failing}"


def test_every_mutant_is_caught_by_a_named_test(matrix, show_matrix):
    _, rows = matrix
    lines = []
    for mutant, outcomes in rows.items():
        caught = [name for name, o in outcomes.items() if o == "X"]
        errors = [name for name, o in outcomes.items() if o == "E"]
        lines.append(f"  {mutant:34s} caught by {len(caught):3d}: {', '.join(caught[:6])}"
                     f"{' ...' if len(caught) > 6 else ''}{f'  [E: {len(errors)}]' if errors else ''}")
    show_matrix("self-check: which test (X) caught which broken variant (E = error, not counted)", lines)
    missed = [m for m, outcomes in rows.items() if "X" not in outcomes.values()]
    assert len(rows) >= 15
    assert not missed, f"mutants caught by no test: {missed}"


def _plugin() -> mutation._Matrix:
    """The matrix's plugin over a mutant the properties below catch and one they do not."""
    return mutation._Matrix([m for m in MUTANTS if m.name in ("linear_off_by_one", "v_sign")])


@settings(settings.get_profile(mutation.PROFILE))
@given(T=st.integers(2, 2000))
def _linear_betas_are_evenly_spaced(T):
    """A property for the test below: beta_t = 1e-4 + (0.02 - 1e-4) (t - 1) / (T - 1), to 4 ulp."""
    t = np.arange(1, T + 1)
    expected = 1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1)
    assert np.all(np.abs(ref.linear(T).beta() - expected) <= 4 * np.finfo(float).eps * expected)


def test_shared_examples_give_the_outcomes_of_one_run_per_variant():
    """The matrix draws a Hypothesis test's examples once and runs each under every variant not yet
    decided (`mutation._Matrix`); under the derandomised selfcheck profile that gives the outcomes of
    one run per variant, and Hypothesis runs a stand-in with the test's own digest (its seed): here on
    a property, a mutant it catches and one it does not."""
    fn, plugin = _linear_betas_are_evenly_spaced, _plugin()
    original, seen = fn.hypothesis.inner_test, []
    shared = plugin._shared_examples(SimpleNamespace(runtest=lambda: (seen.append(fn.hypothesis.inner_test), fn())),
                                     fn.hypothesis)
    one_run_each = {name: plugin._call(fn, name, variant) for name, variant in plugin.variants}
    assert fn.hypothesis.inner_test is original
    assert seen[0] is not original and function_digest(seen[0]) == function_digest(original)
    assert shared == one_run_each == {"control": ".", "linear_off_by_one": "X", "v_sign": "."}


_SEEN: list[tuple[float, float]] = []


@settings(settings.get_profile(mutation.PROFILE))
@given(T=st.integers(2, 50))
def _draws_from_the_global_random_states(T):
    """A property for the test below: records a draw from random's and numpy's global states."""
    _SEEN.append((random.random(), np.random.random()))


def test_shared_examples_start_every_variant_from_the_examples_random_state():
    """Hypothesis seeds the global random states (random's, numpy's) for each example; with the
    examples shared, every variant of an example starts from those states, as its own run would."""
    fn, plugin = _draws_from_the_global_random_states, _plugin()
    _SEEN.clear()
    assert plugin._shared_examples(SimpleNamespace(runtest=fn), fn.hypothesis) == dict.fromkeys(
        ("control", "linear_off_by_one", "v_sign"), ".")
    per_example = [_SEEN[i:i + 3] for i in range(0, len(_SEEN), 3)]
    assert len(_SEEN) % 3 == 0 and len(per_example) >= 8
    assert all(seen == [seen[0]] * 3 for seen in per_example), per_example
