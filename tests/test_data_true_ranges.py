"""data.true_E_pa: the TRUE E of each material drawn from an inner range, so that the
annotator's biased labels stay inside PARAM_RANGES, and the physics cue spans that range."""
import math

import numpy as np
import pytest

from physgm.config import DataConfig
from physgm.data.annotator import annotate
from physgm.data.appearance import range_position
from physgm.materials import PARAM_RANGES, sample_params

INNER = {"jelly": (2e4, 1.5e5), "sand": (5e4, 3e5)}


def test_true_e_is_drawn_from_the_inner_range_with_the_same_draws():
    cfg = DataConfig(true_E_pa=INNER)
    for material, (lo, hi) in INNER.items():
        es = [sample_params(material, np.random.default_rng(s), cfg.true_ranges(material)).E
              for s in range(200)]
        assert lo <= min(es) and max(es) <= hi
        assert np.log10(max(es)) - np.log10(min(es)) > 0.8 * math.log10(hi / lo)
        # the other parameters are drawn exactly as without the inner range
        a = sample_params(material, np.random.default_rng(7), cfg.true_ranges(material))
        b = sample_params(material, np.random.default_rng(7))
        assert a.nu == b.nu and a.density == b.density
    assert cfg.true_ranges("metal") == {}


def test_inner_range_keeps_biased_labels_unclipped():
    """Jelly's labels are 0.5 decades stiffer (label_bias 1) with 0.3 decades of noise: drawn
    over the whole range a quarter of them would sit at the 1e6 Pa edge; from (2e4, 1e5)
    hardly any does."""
    cfg = DataConfig(true_E_pa={"jelly": (2e4, 1e5)})
    hi = PARAM_RANGES["jelly"]["E"][1]
    clipped = {}
    for name, ranges in (("whole", {}), ("inner", cfg.true_ranges("jelly"))):
        n = 0
        for s in range(300):
            rng = np.random.default_rng(s)
            true = sample_params("jelly", rng, ranges)
            label = annotate(true, rng, noise=1.0, bias=1.0)
            n += label.material.value == "jelly" and label.E >= hi * (1 - 1e-9)
        clipped[name] = n / 300
    assert clipped["whole"] > 0.15 and clipped["inner"] < 0.03


def test_physics_cue_positions_span_the_inner_range():
    ranges = DataConfig(true_E_pa=INNER).true_ranges("jelly")
    lo = sample_params("jelly", np.random.default_rng(0), {"E": (2e4, 2.0001e4)})
    assert range_position(lo, "E", ranges) == pytest.approx(0.0, abs=1e-3)
    assert range_position(lo, "E") == pytest.approx(math.log10(2) / 2, abs=1e-3)


@pytest.mark.parametrize("bad", [{"jelly": (5e3, 1e5)}, {"metal": (1e6, 1e5)},
                                 {"snow": (1e4, 2e6)}])
def test_bad_inner_ranges_name_the_field(bad):
    with pytest.raises(ValueError, match=f"data.true_E_pa.{next(iter(bad))}"):
        DataConfig(true_E_pa=bad)
