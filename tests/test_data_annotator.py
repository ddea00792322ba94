"""The simulated annotator: its statistics match the documented confusion and biases."""
import math

import numpy as np
import pytest

from physgm.data.annotator import (CONFUSION, E_BIAS_DECADES, E_SIGMA_DECADES, NU_BIAS,
                                   annotate, confusion_matrix)
from physgm.materials import MATERIALS, PARAM_RANGES, Material, PhysParams, sample_params


def test_confusion_matrix_rows_and_scaling():
    for lam in (0.0, 0.5, 1.0, 2.0, 5.0):
        P = confusion_matrix(lam)
        assert P.shape == (5, 5) and (P >= 0).all()
        np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(confusion_matrix(0.0), np.eye(5))
    C = np.array([[CONFUSION[t][lab] for lab in MATERIALS] for t in MATERIALS])
    np.testing.assert_allclose(confusion_matrix(1.0), C)
    np.testing.assert_allclose(np.diag(confusion_matrix(0.5)), 1 - 0.5 * (1 - np.diag(C)))
    assert 0.75 <= np.diag(C).mean() <= 0.85
    with pytest.raises(ValueError, match="≥ 0"):
        confusion_matrix(-1.0)


def test_empirical_confusion_matches_the_matrix():
    rng = np.random.default_rng(0)
    n = 3000
    counts = np.zeros((5, 5))
    for i, m in enumerate(MATERIALS):
        for _ in range(n):
            counts[i, MATERIALS.index(annotate(PhysParams.default(m), rng).material)] += 1
    P = counts / n
    np.testing.assert_allclose(P, confusion_matrix(1.0), atol=0.025)
    overall = 1 - np.trace(P) / 5
    assert abs(overall - 0.20) < 0.02
    # the likely confusions are the documented ones
    j, p, sa, sn = (MATERIALS.index(Material(x)) for x in ("jelly", "plasticine", "sand", "snow"))
    assert P[j, p] > 0.1 and P[p, j] > 0.1 and P[sa, sn] > 0.1 and P[sn, sa] > 0.1


@pytest.mark.parametrize("noise,bias", [(1.0, 1.0), (0.5, 1.0), (0.5, 1.6), (1.0, 0.0)])
def test_E_and_nu_bias_and_spread(noise, bias):
    rng = np.random.default_rng(1)
    for m in MATERIALS:
        lo, hi = PARAM_RANGES[m]["E"]
        mid = 10 ** ((math.log10(lo) + math.log10(hi)) / 2)  # far from the clipping bounds
        nu_mid = sum(PARAM_RANGES[m]["nu"]) / 2
        true = PhysParams.default(m, E=mid, nu=nu_mid)
        dlog, dnu = [], []
        for _ in range(4000):
            lab = annotate(true, rng, noise, bias)
            if lab.material == m:
                dlog.append(math.log10(lab.E) - math.log10(mid))
                dnu.append(lab.nu - nu_mid)
        dlog = np.array(dlog)
        # median is unaffected by clipping of the far tail; IQR/1.349 estimates σ
        assert abs(np.median(dlog) - noise * bias * E_BIAS_DECADES[m]) < 0.03
        iqr = np.subtract(*np.percentile(dlog, [75, 25])) / 1.349
        assert abs(iqr - noise * E_SIGMA_DECADES) < 0.03
        assert abs(np.median(dnu) - noise * bias * NU_BIAS[m]) < 0.01


def test_labels_stay_in_the_label_materials_ranges():
    rng = np.random.default_rng(2)
    for _ in range(2000):
        true = sample_params(MATERIALS[int(rng.integers(5))], rng)
        lab = annotate(true, rng, noise=3.0)
        assert not lab.out_of_range(), lab.out_of_range()
        assert set(lab.values()) == set(PARAM_RANGES[lab.material])


def test_zero_noise_gives_perfect_labels():
    rng = np.random.default_rng(3)
    for _ in range(200):
        true = sample_params(MATERIALS[int(rng.integers(5))], rng)
        assert annotate(true, rng, noise=0.0) == true


def test_seeded_and_fixed_draw_count():
    true = PhysParams.default("sand")
    a = [annotate(true, np.random.default_rng(9)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    # a fixed number of draws per call: the generator state after one call does not depend
    # on the outcome, so streams of labels stay aligned whatever materials come out
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    annotate(PhysParams.default("metal"), r1, 0.0)
    annotate(PhysParams.default("snow"), r2, 3.0)
    assert r1.random() == r2.random()


def test_bias_leaves_material_and_draws_alone():
    """label_bias moves only the systematic E and ν offsets: same material labels, same
    random draws, so a store made with another bias differs in those two values only."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        true = sample_params(MATERIALS[int(rng.integers(5))], rng)
        seed = int(rng.integers(2 ** 32))
        a = annotate(true, np.random.default_rng(seed), 1.0, 1.0)
        b = annotate(true, np.random.default_rng(seed), 1.0, 2.0)
        assert a.material == b.material
        diff = {k for k, v in a.values().items() if v != b.values()[k]}
        assert diff <= {"E", "nu"}
    with pytest.raises(ValueError, match="bias"):
        annotate(PhysParams.default("jelly"), rng, 1.0, -1.0)
