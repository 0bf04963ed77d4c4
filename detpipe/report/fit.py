"""Saturating power law of accuracy against data: ``mAP(N) = a - b * N**(-alpha)``.

``N`` is the training-set fraction in percent of the full set (N = 100 is all of it), so
``a`` is the asymptote (the mAP with unlimited data), ``alpha`` how fast it is approached,
and ``b`` the gap at N = 1 %. ``b`` depends on the unit of N; ``a`` and ``alpha`` do not.
An image count is ``N / 100 * full_images``.

The fit is done on N / max(N) for conditioning. For a fixed ``alpha`` the model is linear
in (a, b), so a grid over ``alpha`` with linear least squares gives a starting point near
the optimum, which ``scipy.optimize.curve_fit`` (trust region, bounded) then refines.
Bounds: 0 <= a <= 1 (mAP cannot exceed 1), b >= 0 (more data never hurts), 0.01 <= alpha <= 5.
At least 4 distinct fractions are needed (3 parameters plus one degree of freedom).

Usage::

    result = fit_power_law([2.5, 5, 10, 25, 50, 100], [0.18, 0.35, 0.40, 0.45, 0.48, 0.50])
    if result.fit is not None:
        n_needed = result.fit.required_n(0.4)   # None: not reachable (target >= a)
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MIN_POINTS = 4
A_BOUNDS = (0.0, 1.0)
B_MAX = 1e3  # on the normalized scale, b' = b * max(N)**(-alpha)
ALPHA_BOUNDS = (0.01, 5.0)
_ALPHA_GRID = np.geomspace(*ALPHA_BOUNDS, 241)


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted ``mAP(N) = a - b * N**(-alpha)``, N in percent, and its error on the data.

    Attributes:
        a: Asymptote (mAP with unlimited data).
        b: Scale of the gap (its value at N = 1 %).
        alpha: Exponent.
        rmse: Root mean squared residual over the fitted points.
        r2: Coefficient of determination; None when the scores do not vary.
        points: Number of points fitted.
        at_bound: Names of parameters that ended at a bound (extrapolation is then unreliable).
    """

    a: float
    b: float
    alpha: float
    rmse: float
    r2: float | None
    points: int
    at_bound: tuple[str, ...] = ()

    def predict(self, n: Sequence[float] | np.ndarray | float) -> np.ndarray:
        """Predicted mAP at fraction(s) ``n`` (percent)."""
        return self.a - self.b * np.power(np.asarray(n, dtype=float), -self.alpha)

    def required_n(self, target: float) -> float | None:
        """The fraction (percent) at which the curve reaches ``target``; None if ``target >= a``."""
        if target >= self.a:
            return None
        return (self.b / (self.a - target)) ** (1.0 / self.alpha)


@dataclass(frozen=True)
class FitResult:
    """Outcome of a fit: ``status`` is "ok", "insufficient points" or "failed"."""

    status: str
    fit: PowerLawFit | None = None
    reason: str = ""


def _model(x: np.ndarray, a: float, b: float, alpha: float) -> np.ndarray:
    return a - b * np.power(x, -alpha)


def _grid_start(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Best (a, b, alpha) over the alpha grid, (a, b) by linear least squares, clipped to bounds."""
    best, best_sse = (float(np.clip(y.max(), *A_BOUNDS)), 0.0, 1.0), math.inf
    for alpha in _ALPHA_GRID:
        design = np.column_stack([np.ones_like(x), -np.power(x, -alpha)])
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        a, b = float(np.clip(a, *A_BOUNDS)), float(np.clip(b, 0.0, B_MAX))
        sse = float(np.sum((y - _model(x, a, b, alpha)) ** 2))
        if sse < best_sse:
            best, best_sse = (a, b, float(alpha)), sse
    return best


def fit_power_law(n: Sequence[float], y: Sequence[float], min_points: int = MIN_POINTS) -> FitResult:
    """Fit ``y = a - b * n**(-alpha)`` by bounded least squares.

    Args:
        n: Training-set fractions in percent, one per point (distinct, > 0).
        y: mAP50-95 at each fraction (means over seeds).
        min_points: Fewest points to attempt a fit with.

    Returns:
        A :class:`FitResult`; ``fit`` is None unless ``status == "ok"``.
    """
    from scipy.optimize import OptimizeWarning, curve_fit  # scipy only when fitting: fast CLI start

    x_raw = np.asarray(n, dtype=float)
    y = np.asarray(y, dtype=float)
    if x_raw.shape != y.shape or x_raw.ndim != 1:
        raise ValueError("n and y must be 1-D sequences of equal length")
    if len(np.unique(x_raw)) < min_points:
        return FitResult(
            "insufficient points", reason=f"{len(np.unique(x_raw))} fractions, need >= {min_points}"
        )
    scale = float(x_raw.max())
    x = x_raw / scale
    p0 = _grid_start(x, y)
    lower, upper = (A_BOUNDS[0], 0.0, ALPHA_BOUNDS[0]), (A_BOUNDS[1], B_MAX, ALPHA_BOUNDS[1])
    p0 = tuple(float(np.clip(v, lo + 1e-12, hi - 1e-12)) for v, lo, hi in zip(p0, lower, upper, strict=True))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                _model,
                x,
                y,
                p0=p0,
                bounds=(lower, upper),
                method="trf",
                ftol=1e-14,
                xtol=1e-14,
                gtol=1e-14,
                max_nfev=20000,
            )
    except (RuntimeError, ValueError) as e:
        log.warning("power-law fit failed: %s", e)
        return FitResult("failed", reason=str(e).splitlines()[0])
    a, b_norm, alpha = (float(v) for v in params)
    residuals = y - _model(x, a, b_norm, alpha)
    ss_res = float(np.sum(residuals**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    at_bound = tuple(
        name
        for name, v, lo, hi in zip(("a", "b", "alpha"), params, lower, upper, strict=True)
        if math.isclose(v, lo, abs_tol=1e-6) or math.isclose(v, hi, abs_tol=1e-6)
    )
    fit = PowerLawFit(
        a=a,
        b=b_norm * scale**alpha,
        alpha=alpha,
        rmse=math.sqrt(ss_res / len(y)),
        r2=1.0 - ss_res / ss_tot if ss_tot > 0 else None,
        points=len(y),
        at_bound=at_bound,
    )
    return FitResult("ok", fit=fit)
