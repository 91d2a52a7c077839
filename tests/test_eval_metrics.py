"""Known-answer tests of the biometric metrics (``anonymixer.eval.metrics``)."""

import numpy as np
import pytest

from anonymixer.errors import EvaluationError
from anonymixer.eval import metrics


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


def test_identical_distributions_give_eer_one_half_and_d_sys_near_zero(rng):
    mated, non_mated = rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)
    assert metrics.eer(mated, non_mated).rate == pytest.approx(0.5, abs=0.02)
    assert metrics.auc(mated, non_mated) == pytest.approx(0.5, abs=0.02)
    assert metrics.linkability(mated, non_mated).d_sys < 0.05
    assert metrics.linkability(mated, non_mated, method="kde").d_sys < 0.05


def test_disjoint_distributions_give_eer_zero_and_d_sys_one(rng):
    mated, non_mated = rng.normal(10, 1, 5_000), rng.normal(0, 1, 5_000)
    result = metrics.eer(mated, non_mated)
    assert result.rate == 0.0
    assert non_mated.max() < result.threshold <= mated.min()
    assert metrics.auc(mated, non_mated) == 1.0
    assert metrics.linkability(mated, non_mated).d_sys == pytest.approx(1.0, abs=1e-9)
    assert metrics.linkability(mated, non_mated, method="kde").d_sys > 0.99


def test_overlapping_distributions_give_intermediate_linkability(rng):
    mated, non_mated = rng.normal(1.5, 1, 20_000), rng.normal(0, 1, 20_000)
    d_hist = metrics.linkability(mated, non_mated).d_sys
    d_kde = metrics.linkability(mated, non_mated, method="kde").d_sys
    assert 0.3 < d_hist < 0.7
    assert d_kde == pytest.approx(d_hist, abs=0.03)


def test_local_linkability_is_zero_where_non_mated_dominate_and_one_where_only_mated_occur(rng):
    link = metrics.linkability(rng.normal(3, 1, 5_000), rng.normal(0, 1, 5_000))
    assert np.all(link.local[link.scores < 0.5] == 0.0)
    assert np.all(link.local[link.p_non_mated == 0] == 1.0)
    assert np.all((link.local >= 0) & (link.local <= 1))


def test_tar_at_far_matches_scikit_learn_roc_curve(rng):
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the dev extra")
    mated = np.round(rng.normal(2.0, 1.0, 3_000), 2)        # rounding makes ties, the hard case
    non_mated = np.round(rng.normal(0.0, 1.0, 30_000), 2)
    labels = np.r_[np.ones(mated.size), np.zeros(non_mated.size)]
    fpr, tpr, thresholds = sklearn_metrics.roc_curve(labels, np.r_[mated, non_mated], drop_intermediate=False)
    for target in metrics.DEFAULT_FARS:
        point = metrics.tar_at_far(mated, non_mated, target)
        k = np.nonzero(fpr <= target)[0][-1]
        assert point.tar == pytest.approx(tpr[k], abs=1e-12)
        assert point.far == pytest.approx(fpr[k], abs=1e-12)
        # Ours is the lowest threshold of the same operating point; scikit-learn's is a score above it.
        assert thresholds[k + 1] < point.threshold <= thresholds[k]
        assert metrics.match_rate(non_mated, point.threshold) == point.far
        assert metrics.match_rate(mated, point.threshold) == point.tar
        assert point.resolved
    assert metrics.auc(mated, non_mated) == pytest.approx(sklearn_metrics.roc_auc_score(labels, np.r_[mated, non_mated]))


def test_roc_rates_match_scikit_learn_at_every_point(rng):
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the dev extra")
    mated, non_mated = rng.normal(1, 1, 500), rng.normal(0, 1, 700)
    labels = np.r_[np.ones(mated.size), np.zeros(non_mated.size)]
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, np.r_[mated, non_mated], drop_intermediate=False)
    curve = metrics.roc(mated, non_mated)
    np.testing.assert_allclose(curve.far, fpr)
    np.testing.assert_allclose(curve.tar, tpr)


def test_far_below_the_data_resolution_is_flagged_unresolved():
    point = metrics.tar_at_far([0.9, 0.8, 0.3], [0.1, 0.2, 0.5], 1e-3)
    assert not point.resolved
    assert point.far == 0.0 and point.tar == pytest.approx(2 / 3)
    assert 0.5 < point.threshold < 0.8  # just above the highest non-mated score


def test_eer_interpolates_between_bracketing_points():
    result = metrics.eer([1.0, 2.0, 3.0], [0.5, 1.5])
    assert result.rate == pytest.approx(1 / 3)
    assert 1.5 < result.threshold < 2.0


def test_distances_are_scored_by_negation():
    scores = metrics.distances_to_scores([0.2, 0.7])
    np.testing.assert_array_equal(scores, [-0.2, -0.7])
    assert metrics.match_rate(scores, -0.6) == 0.5  # dlib: match at distance <= 0.6


def test_protection_and_attack_success_rates_count_non_matches_and_matches():
    scores = [0.1, 0.2, 0.6, 0.9]
    assert metrics.protection_success_rate(scores, 0.5) == 0.5
    assert metrics.attack_success_rate(scores, 0.85) == 0.25


def test_empty_or_nan_scores_are_evaluation_errors():
    with pytest.raises(EvaluationError, match="no mated scores"):
        metrics.eer([], [0.1])
    with pytest.raises(EvaluationError, match="NaN"):
        metrics.auc([0.1, float("nan")], [0.1])


def test_verification_metrics_are_json_ready(rng):
    import json

    found = metrics.verification_metrics(rng.normal(1, 1, 100), rng.normal(0, 1, 100))
    assert set(found["tar_at_far"]) == {"0.01", "0.001", "0.0001"}
    assert not found["tar_at_far"]["0.001"]["resolved"]
    json.dumps(found, allow_nan=False)


def test_threshold_at_far_lets_through_at_most_the_target_share_of_impostors():
    impostors = np.arange(1000, dtype=np.float64) / 1000.0      # 0.000 .. 0.999
    t = metrics.threshold_at_far(impostors, 0.01)
    assert np.count_nonzero(impostors >= t) == 10              # 0.990 .. 0.999
    assert np.count_nonzero(impostors >= np.nextafter(t, -np.inf)) == 11   # the lowest such threshold
