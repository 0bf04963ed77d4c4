"""The saturating power law: recovery of known parameters, inversion, unreachable targets."""

from __future__ import annotations

import numpy as np
import pytest

from detpipe.report.fit import PowerLawFit, fit_power_law

FRACTIONS = np.array([0.3125, 0.625, 1.25, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0])


@pytest.mark.parametrize(
    ("a", "b", "alpha"),
    [(0.55, 0.3, 0.5), (0.4, 0.2, 1.2), (0.62, 0.05, 0.3), (0.9, 1.5, 0.8)],
)
def test_recovers_known_parameters_from_noiseless_data(a, b, alpha):
    y = a - b * FRACTIONS ** (-alpha)
    result = fit_power_law(FRACTIONS, y)
    assert result.status == "ok" and result.fit is not None
    fit = result.fit
    assert abs(fit.a - a) < 1e-3 and abs(fit.b - b) < 1e-3 and abs(fit.alpha - alpha) < 1e-3
    assert fit.rmse < 1e-9 and fit.r2 == pytest.approx(1.0)
    assert fit.points == 9 and fit.at_bound == ()


def test_recovers_with_the_minimum_of_four_points():
    x = FRACTIONS[-4:]
    fit = fit_power_law(x, 0.55 - 0.3 * x**-0.5).fit
    assert fit is not None
    assert (fit.a, fit.b, fit.alpha) == pytest.approx((0.55, 0.3, 0.5), abs=1e-3)


def test_target_inversion():
    # 0.55 - 0.3 * N^-0.5 = 0.4  <=>  N^-0.5 = 0.5  <=>  N = 4 %
    fit = fit_power_law(FRACTIONS, 0.55 - 0.3 * FRACTIONS**-0.5).fit
    assert fit is not None
    assert fit.required_n(0.4) == pytest.approx(4.0, rel=1e-6)
    assert float(fit.predict(4.0)) == pytest.approx(0.4)
    # and by hand on a known curve: (0.3 / (0.55 - 0.5))^(1/0.5) = 6^2 = 36 %
    assert PowerLawFit(a=0.55, b=0.3, alpha=0.5, rmse=0, r2=1, points=9).required_n(0.5) == pytest.approx(
        36.0
    )


def test_target_at_or_above_the_asymptote_is_not_reachable():
    fit = PowerLawFit(a=0.45, b=0.2, alpha=0.7, rmse=0, r2=1, points=6)
    assert fit.required_n(0.45) is None
    assert fit.required_n(0.6) is None


def test_insufficient_points():
    result = fit_power_law([25, 50, 100], [0.3, 0.35, 0.37])
    assert (result.status, result.fit, result.reason) == (
        "insufficient points",
        None,
        "3 fractions, need >= 4",
    )


def test_noisy_data_fit_reports_its_error():
    y = 0.55 - 0.3 * FRACTIONS**-0.5 + np.array([0.01, -0.01] * 4 + [0.01])
    fit = fit_power_law(FRACTIONS, y).fit
    assert fit is not None
    residuals = y - fit.predict(FRACTIONS)
    assert fit.rmse == pytest.approx(float(np.sqrt(np.mean(residuals**2))))
    assert fit.r2 == pytest.approx(1 - np.sum(residuals**2) / np.sum((y - y.mean()) ** 2))
    assert 0.0 < fit.rmse <= 0.01  # no worse than the true curve, whose RMSE is exactly 0.01


def test_fit_min_fraction_fits_above_the_cliff_only(tmp_path):
    from detpipe.report.stage import ReportConfig, build_report

    rows = ["model,fraction,best_map5095"]
    for f in [0.625, 1.25, 2.5, 5, 10, 25, 50, 100]:
        y = 0.55 - 0.3 * f**-0.5 if f >= 5 else 0.02 * f  # a power law above 5 %, a cliff below
        rows.append(f"yolo12n,{f:g},{y!r}")
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows) + "\n")
    fit = build_report(ReportConfig(out=tmp_path / "o", table=table, fit_min_fraction=5))["models"][
        "yolo12n"
    ]["fit"]
    assert (fit["status"], fit["points"], fit["min_fraction"]) == ("ok", 5, 5)
    assert (fit["a"], fit["b"], fit["alpha"]) == pytest.approx((0.55, 0.3, 0.5), abs=1e-3)
    # mAP 0.4 at N = 4 %: below the fitted range, so flagged as extrapolated
    assert fit["target"] == {
        "map": 0.4,
        "status": "reachable",
        "fraction": pytest.approx(4.0, abs=1e-4),
        "images": None,
        "extrapolated": True,
        "beyond_full_set": False,
    }
    everything = build_report(ReportConfig(out=tmp_path / "o", table=table))["models"]["yolo12n"]["fit"]
    assert everything["points"] == 8 and everything["rmse"] > 0.01  # one power law does not fit a cliff
