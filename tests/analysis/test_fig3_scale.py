"""Fig. 3 at a scale that can show degeneration (issue 30 §2): the authors' uniform init as
a random init in the claims, and diverged runs kept, shown and counted."""

from __future__ import annotations

from tests.analysis.test_claims import by_claim, collapse, curve_runs, rise, run_claims


def test_fig3b_compares_a_pretrained_init_with_the_uniform_init_as_with_random(tmp_path):
    # uniform is fresh weights (the authors' U(±0.05)), not a pretrained init: Fig. 3b
    # compares behavior with it; it is never the "pretrained" side.
    curve_runs(
        tmp_path,
        {
            ("uniform", "none", None): collapse,
            ("uniform", "quantile", 0.8): rise,
            ("behavior", "none", None): rise,
            ("behavior", "quantile", 0.8): rise,
        },
    )
    rows = by_claim(run_claims(tmp_path))
    claim = (
        "Fig. 3b: N/A's joint degeneration is less frequent at init=behavior than at "
        "init=uniform: share(random) − share(pretrained)"
    )
    row = rows[(claim, "train/acc and train/reward both fall")]
    assert row.effect == 1.0 and len(row.diffs) == 18 and row.verdict == "holds"
    assert row.note == "none at init=behavior"
    assert not [c for c, _ in rows if "at init=uniform than" in c]  # never the pretrained side
