"""ZeroInflatedPoissonGLMMRegressor: a Poisson GLMM plus a logistic model of structural zeros.

The estimator reuses the GLMM plumbing of :class:`~sklearn_glmm._base._BaseGLMM`
(checks, groups, routing, predict policies) and adds the zero-inflation design
(:class:`ZeroInflationDesignBuilder`) and coefficients. The likelihood, its
Laplace approximation and gradient live in :mod:`sklearn_glmm._core._zip`.
"""

from __future__ import annotations

import dataclasses
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.base import RegressorMixin

from ._base import _BaseGLMM, inverse_information, scaled_inverse
from ._core import ZIPLikelihood, fit_glm
from ._regressors import (
    ATTRIBUTES_DOC,
    FIXED_EFFECTS_DOC,
    GROUPS_DOC,
    RANDOM_EFFECTS_DOC,
    SOLVER_OPTIONS_DOC,
    see_also,
)
from .design import INTERCEPT, Design, DesignBuilder, independent_columns
from .families import PoissonFamily
from .results import GLMMSummary, coefficient_table
from .utils._param_validation import Interval
from .utils._validation import SeparationWarning

__all__ = ["ZeroInflatedPoissonGLMMRegressor", "ZeroInflationDesignBuilder"]


@dataclasses.dataclass
class ZeroInflatedDesign(Design):
    """A :class:`~sklearn_glmm.design.Design` with the zero-inflation columns.

    Attributes
    ----------
    X_zi : ndarray of shape (n, pz)
        Zero-inflation design, intercept column first.
    """

    X_zi: np.ndarray | None = None


class ZeroInflationDesignBuilder(DesignBuilder):
    """The count model's design plus the zero-inflation columns of X.

    Parameters
    ----------
    random_effects : str
        As :class:`~sklearn_glmm.design.DesignBuilder`.
    zero_inflation : list of str or int, or None
        The X columns of the zero-inflation model (names for a DataFrame,
        positions otherwise); ``None`` takes them all, ``[]`` only the
        intercept.
    """

    def __init__(self, random_effects: str, zero_inflation, fixed_effects=None):
        super().__init__(random_effects, fixed_effects)
        self.zero_inflation = zero_inflation

    def _zi_index(self, feature_names: list[str]) -> list[int]:
        if self.zero_inflation is None:
            return list(range(len(feature_names)))
        index = []
        for item in self.zero_inflation:
            if isinstance(item, str):
                if item not in feature_names:
                    raise ValueError(
                        f"zero_inflation names column {item!r}, which is not in X; X has columns "
                        f"{feature_names}."
                    )
                index.append(feature_names.index(item))
            elif isinstance(item, Integral) and not isinstance(item, bool):
                if not -len(feature_names) <= item < len(feature_names):
                    raise ValueError(
                        f"zero_inflation position {item} is not a column of X ({len(feature_names)} columns)."
                    )
                index.append(int(item) % len(feature_names))
            else:
                raise TypeError(f"zero_inflation entries must be column names or positions; got {item!r}.")
        if len(set(index)) != len(index):
            raise ValueError(f"zero_inflation lists a column twice: {self.zero_inflation!r}.")
        return index

    def fit(self, X, feature_names, groups, sample_weight=None) -> ZeroInflatedDesign:
        """Fit the count design (see the parent), then the zero-inflation columns.

        Zero-inflation columns dependent on earlier ones are dropped, as for the
        count model; their names are in ``zi_dropped_``.
        """
        design = super().fit(X, feature_names, groups, sample_weight)
        self.zi_index_ = self._zi_index(list(feature_names))
        self.zi_keep_ = np.ones(len(self.zi_index_) + 1, dtype=bool)
        full = self._zero_inflation(X)
        w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        self.zi_keep_ = independent_columns(full, weights=w)
        names = [INTERCEPT] + [self.feature_names_[j] for j in self.zi_index_]
        self.fixef_zi_names_ = [n for n, k in zip(names, self.zi_keep_) if k]
        self.zi_dropped_ = [n for n, k in zip(names, self.zi_keep_) if not k]
        return ZeroInflatedDesign(design.X, design.terms, full[:, self.zi_keep_])

    def transform(self, X, groups) -> ZeroInflatedDesign:
        design = super().transform(X, groups)
        return ZeroInflatedDesign(design.X, design.terms, self._zero_inflation(X)[:, self.zi_keep_])

    def _zero_inflation(self, X) -> np.ndarray:
        return np.column_stack([np.ones(X.shape[0])] + [X[:, j] for j in self.zi_index_])

    def formula_zi(self) -> str:
        """The zero-inflation model as glmmTMB's ``ziformula``."""
        terms = [self.feature_names_[j] for j in self.zi_index_]
        return "~" + (" + ".join(terms) if terms else "1")


@dataclasses.dataclass
class ZeroInflatedGLMMSummary(GLMMSummary):
    """:class:`~sklearn_glmm.results.GLMMSummary` with the zero-inflation table."""

    zero_inflation: pd.DataFrame | None = None
    zero_inflation_formula: str = "~1"

    def __str__(self) -> str:
        zi = dataclasses.replace(self, coefficients=self.zero_inflation)
        lines = zi._fixed_effects_lines()
        lines[0] = (
            f"Zero-inflation model: {self.zero_inflation_formula} "
            f"(logit link; standard errors: {self.se_method}):"
        )
        return super().__str__() + "\n\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        return (
            super()._repr_html_()
            + f"<p>Zero-inflation model: {self.zero_inflation_formula} (logit link)</p>"
            + self.zero_inflation.to_html(float_format=lambda v: f"{v:.4g}")
        )


def _check_counts(y: np.ndarray) -> None:
    bad = y != np.floor(y)
    if np.any(bad):
        raise ValueError(
            "Zero-inflated Poisson y must be whole counts (0, 1, 2, ...); found "
            f"{int(np.sum(bad))} non-integer value(s), e.g. {y[bad][0]!r}."
        )


class ZeroInflatedPoissonGLMMRegressor(RegressorMixin, _BaseGLMM):
    _parameter_constraints: ClassVar[dict] = {
        **_BaseGLMM._parameter_constraints,
        "zero_inflation": [None, list],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
    }
    score = _BaseGLMM.score
    _residual_kinds = ("response", "pearson")
    _default_residual_kind = "pearson"

    def __init__(
        self,
        random_effects="1",
        *,
        zero_inflation=None,
        fixed_effects=None,
        group_column=None,
        new_groups="population",
        max_iter=500,
        tol=1e-10,
        solver_options=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            random_effects,
            fixed_effects=fixed_effects,
            group_column=group_column,
            new_groups=new_groups,
            max_iter=max_iter,
            solver_options=solver_options,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.zero_inflation = zero_inflation
        self.tol = tol

    # -- hooks ----------------------------------------------------------------
    def _get_family(self):
        return PoissonFamily()

    #: the zero-inflation design is not built from partitions yet
    _fits_partitioned = False

    def _design_builder(self):
        return ZeroInflationDesignBuilder(self.random_effects, self.zero_inflation, self.fixed_effects)

    def _controls_overrides(self) -> dict:
        return {"max_iter": self.max_iter, "tol": self.tol}

    def _prepare_y(self, y):
        y = super()._prepare_y(y)
        _check_counts(y)
        return y

    def _check_weighted_y(self, y, w):
        # without a zero the zero-inflation probability's estimate is 0 (logit -infinity):
        # said after the fit (_set_param_attributes)
        self._without_zeros = not np.any(y[w > 0] == 0)

    def _set_param_attributes(self, family) -> None:
        if not getattr(self, "_without_zeros", False):
            return
        note = (
            "y has no zeros: the zero-inflation probability's estimate is 0 (logit -infinity); the "
            "zero-inflation coefficients ran off and their standard errors mean nothing"
        )
        if self.fit_summary_ is not None:
            self.fit_summary_.notes.append(note)
        warnings.warn(
            f"{type(self).__name__}: {note}. There is nothing for zero inflation to explain: fit "
            "PoissonGLMMRegressor instead.",
            SeparationWarning,
            stacklevel=4,
        )

    def _check_y(self, y, n_samples):
        y = super()._check_y(y, n_samples)
        _check_counts(y)
        return y

    def _n_parameters(self) -> int:
        return self.fixef_.size + self.fixef_zi_.size + self.theta_.size

    def _check_inference_supported(self, what: str) -> None:
        raise NotImplementedError(
            f"{what} is not available for ZeroInflatedPoissonGLMMRegressor; use method='wald'."
        )

    # -- fit ------------------------------------------------------------------
    def _engine_options(self, design) -> dict:
        if len(design.terms) != 1 or design.terms[0].bar_sizes is not None:
            raise ValueError(
                f"{type(self).__name__} supports one grouping factor with correlated terms; "
                f"random_effects={self.random_effects!r} has several factors or '||' terms."
            )
        self._warn_dropped_zero_inflation_columns()
        return {"X_zi": design.X_zi}

    def _warn_dropped_zero_inflation_columns(self) -> None:
        dropped = [n for n in self._builder.zi_dropped_ if n not in self._builder.dropped_]
        if dropped:
            warnings.warn(
                f"Zero-inflation column(s) {dropped} are linearly dependent on earlier "
                "zero-inflation columns and were dropped.",
                UserWarning,
                stacklevel=5,
            )

    def _set_result_attributes(self, problem, result, terms) -> None:
        p, nt = problem.n_beta, result.theta.size
        joint = self._vcov_from_hessian(result.hessian, nt)
        self._set_zero_inflation(result.coef[p:], joint[p:, p:])
        self._set_fixed(result.coef[:p], joint[:p, :p])
        self._se_method_used = "Hessian of the Laplace deviance in (theta, beta, beta_zi)"
        self._set_random_attributes(terms, result.theta, problem.random_effects(result.theta, result.u))
        self.loglik_ = -0.5 * result.deviance
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.singular_ = result.singular

    @staticmethod
    def _vcov_from_hessian(hessian, nt) -> np.ndarray:
        """Covariance of (beta, beta_zi): the (theta, beta, beta_zi) Hessian, as glmmTMB's sdreport."""
        try:
            vcov = 2.0 * scaled_inverse(hessian)[nt:, nt:]
        except np.linalg.LinAlgError:
            vcov = np.full((hessian.shape[0] - nt,) * 2, np.nan)
        if np.all(np.isfinite(vcov)) and np.all(np.diag(vcov) > 0):
            return 0.5 * (vcov + vcov.T)
        warnings.warn(
            "The Hessian of the deviance is not positive definite (a variance at its "
            "boundary?); standard errors hold the random-effect variance fixed instead.",
            UserWarning,
            stacklevel=5,
        )
        vcov = inverse_information(0.5 * hessian[nt:, nt:], stacklevel=6)
        return 0.5 * (vcov + vcov.T)

    def _fit_without_groups(self, design, y, w, off, controls) -> None:
        self._warn_dropped_zero_inflation_columns()
        likelihood = ZIPLikelihood(design.X, design.X_zi, y, w, off)
        glm = fit_glm(likelihood, controls)
        self._warn_about_glm(glm)
        vcov = inverse_information(glm.information)
        vcov = 0.5 * (vcov + vcov.T)
        p = design.X.shape[1]
        self._set_fixed(glm.coef[:p], vcov[:p, :p])
        self._set_zero_inflation(glm.coef[p:], vcov[p:, p:])
        self._set_no_random_effects()
        self.loglik_ = likelihood.full_loglik(glm.coef)
        self.n_iter_ = glm.n_iter
        self.converged_ = bool(glm.converged)
        self._se_method_used = "observed information"

    def _set_zero_inflation(self, gamma, vcov) -> None:
        names = self._builder.fixef_zi_names_
        self.fixef_zi_ = pd.Series(gamma, index=names, name="fixef_zi")
        self.vcov_zi_ = pd.DataFrame(vcov, index=names, columns=names)
        self.fixef_zi_se_ = pd.Series(np.sqrt(np.diag(vcov)), index=names, name="se")

    # -- predict --------------------------------------------------------------
    def _zero_proba(self, design) -> np.ndarray:
        return expit(design.X_zi @ self.fixef_zi_.to_numpy())

    def _mean(self, design, offset) -> np.ndarray:
        # zero inflation has no random effects, so E[(1 - p) mu] = (1 - p) E[mu]
        # under every new_groups policy
        return (1.0 - self._zero_proba(design)) * super()._mean(design, offset)

    def _fitted_mu(self, design, offset):
        # base fit passes this straight to _pearson_residuals: both parts are needed
        mu = self._family_.link.inverse(self._linear_predictor(design, offset))
        return np.column_stack([mu, self._zero_proba(design)])

    def _fitted_means(self, fitted: np.ndarray, w: np.ndarray) -> np.ndarray:
        # the means (1 - p) mu of the rows with positive weight: R's "fitted rates numerically
        # 0" check then also sees rows whose zero-inflation probability runs to 1
        mu, p = fitted[w > 0, 0], fitted[w > 0, 1]
        return (1.0 - p) * mu

    def _pearson_residuals(self, y, fitted, w) -> np.ndarray:
        mu, p = fitted[:, 0], fitted[:, 1]
        var = np.maximum((1.0 - p) * mu * (1.0 + p * mu), 1e-300)
        return (y - (1.0 - p) * mu) * np.sqrt(w / var)

    def predict_zero_proba(self, X, groups=None, offset=None, kind: str = "structural") -> np.ndarray:
        """Probability of a zero.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        groups : array-like of shape (n_samples,), default=None
            Group labels; only ``kind="total"`` uses them.
        offset : array-like of shape (n_samples,), default=None
            The count model's offset; only ``kind="total"`` uses it.
        kind : {"structural", "total"}, default="structural"
            ``"structural"``: the zero-inflation probability ``p`` (glmmTMB's
            ``predict(type = "zprob")``). ``"total"``: ``P(y = 0) = p + (1 - p)
            exp(-mu)``, with the conditional modes of known groups and a zero
            random effect for new groups.

        Returns
        -------
        ndarray of shape (n_samples,)

        See Also
        --------
        predict : The expected count ``(1 - p) mu``.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(40), 25)
        >>> X = rng.normal(size=(1000, 1))
        >>> mu = np.exp(0.8 + 0.4 * X[:, 0] + rng.normal(0, 0.5, 40)[g])
        >>> y = np.where(rng.uniform(size=1000) < 0.3, 0, rng.poisson(mu))
        >>> model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(X, y, groups=g)
        >>> model.predict_zero_proba(X[:2]).round(4)               # structural zeros
        array([0.3263, 0.3263])
        >>> model.predict_zero_proba(X[:2], g[:2], kind="total").round(4)
        array([0.3525, 0.3613])
        """
        if kind not in ("structural", "total"):
            raise ValueError(f"kind must be 'structural' or 'total'; got {kind!r}.")
        design, n = self._design_for(X, groups)
        p = self._zero_proba(design)
        if kind == "structural":
            return p
        mu = self._family_.link.inverse(self._linear_predictor(design, self._offset_or_none(offset, n)))
        return p + (1.0 - p) * np.exp(-mu)

    # -- report ---------------------------------------------------------------
    def _method_description(self, mixed: bool) -> str:
        if mixed:
            return "Zero-inflated Poisson GLMM fit by maximum likelihood (Laplace Approximation)"
        return "Zero-inflated Poisson GLM fit by maximum likelihood (no groups given)"

    def _summary_family(self):
        return "poisson (zero-inflated)", "log"

    def summary(self) -> ZeroInflatedGLMMSummary:
        """A glmmTMB-style summary with the count and the zero-inflation tables.

        Returns
        -------
        ZeroInflatedGLMMSummary
            A :class:`~sklearn_glmm.results.GLMMSummary` with the fields
            ``zero_inflation`` (the table of ``fixef_zi_``) and
            ``zero_inflation_formula``.

        See Also
        --------
        confint : Wald intervals of both parts.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(40), 25)
        >>> X = rng.normal(size=(1000, 1))
        >>> mu = np.exp(0.8 + 0.4 * X[:, 0] + rng.normal(0, 0.5, 40)[g])
        >>> y = np.where(rng.uniform(size=1000) < 0.3, 0, rng.poisson(mu))
        >>> model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(X, y, groups=g)
        >>> model.summary().zero_inflation.round(3)
                     Estimate  Std. Error  z value  Pr(>|z|)
        (Intercept)    -0.725       0.086   -8.386       0.0
        """
        base = super().summary()
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(GLMMSummary)}
        return ZeroInflatedGLMMSummary(
            **fields,
            zero_inflation=coefficient_table(self.fixef_zi_, self.vcov_zi_.to_numpy()),
            zero_inflation_formula=self._builder.formula_zi(),
        )

    def _unit_pearson(self, y, design, offset, w) -> np.ndarray:
        """glmmTMB's Pearson residuals ``(y - (1 - p) mu) / sqrt((1 - p) mu (1 + p mu))``."""
        return self._pearson_residuals(y, self._fitted_mu(design, offset), w)

    def simulate(
        self,
        X=None,
        groups=None,
        n_simulations: int = 1,
        random_state=None,
        conditional: bool = True,
        offset=None,
    ) -> np.ndarray:
        """Simulated counts: Poisson draws of the count model, zeroed with probability p.

        The structural zeros are drawn independently of the counts, which is
        the ZIP model.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``predict``; a formula-fitted model also takes a raw data
            frame, or nothing for the rows of its fit.
        groups : array-like or DataFrame, default=None
            Group labels, as in ``fit``; required for a mixed model.
        n_simulations : int, default=1
            Number of simulated responses per row.
        random_state : int, Generator or None, default=None
            Seed of the draws.
        conditional : bool, default=True
            Keep the conditional modes of the levels seen in fit (True) or
            draw new random effects for every level (False).
        offset : array-like of shape (n_samples,), default=None
            The count model's offset.

        Returns
        -------
        ndarray of shape (n_samples, n_simulations)

        See Also
        --------
        sklearn_glmm.simulate : The function form, for every estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(40), 25)
        >>> X = rng.normal(size=(1000, 1))
        >>> mu = np.exp(0.8 + 0.4 * X[:, 0] + rng.normal(0, 0.5, 40)[g])
        >>> y = np.where(rng.uniform(size=1000) < 0.3, 0, rng.poisson(mu))
        >>> model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(X, y, groups=g)
        >>> sims = model.simulate(X, g, n_simulations=20, random_state=0)
        >>> sims.shape, round(float((sims == 0).mean()), 2), round(float((y == 0).mean()), 2)
        ((1000, 20), 0.43, 0.43)
        """
        rng = np.random.default_rng(random_state)
        X, _, groups, _, offset, _ = self._lme4_data(X, None, groups, None, offset, need_y=False)
        counts = super().simulate(X, groups, n_simulations, rng, conditional, offset)
        design, _ = self._design_for(X, groups)
        structural = rng.uniform(size=counts.shape) < self._zero_proba(design)[:, None]
        counts[structural] = 0.0
        return counts

    def confint(
        self,
        method="wald",
        level=0.95,
        *,
        X=None,
        y=None,
        groups=None,
        sample_weight=None,
        offset=None,
        parm=None,
        n_boot=200,
        random_state=None,
        n_jobs=None,
        progress=False,
    ) -> pd.DataFrame:
        """Wald intervals for both parts; zero-inflation rows are named ``"zi~<name>"``.

        Profile and bootstrap intervals are not available for this model
        (``NotImplementedError``).

        Parameters
        ----------
        method : {"wald"}, default="wald"
            Only Wald intervals; ``"profile"`` and ``"bootstrap"`` raise
            ``NotImplementedError``.
        level : float, default=0.95
            Confidence level.
        X, y, groups, sample_weight, offset : default=None
            Not used by Wald intervals (the signature is the other estimators').
        parm : str or list of str, default=None
            Rows of the count model to compute (``".sig01"``, fixed-effect
            names); all when None. The zero-inflation rows always follow.
        n_boot, random_state, n_jobs, progress
            Not used by Wald intervals.

        Returns
        -------
        DataFrame
            Rows ``.sig01 ...`` (NaN, as lme4's Wald intervals), the count
            model's fixed effects and the zero-inflation coefficients
            (``zi~(Intercept)``, ...); columns ``"2.5 %"``, ``"97.5 %"``.

        See Also
        --------
        summary : Estimates, standard errors and Wald tests of both parts.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(40), 25)
        >>> X = rng.normal(size=(1000, 1))
        >>> mu = np.exp(0.8 + 0.4 * X[:, 0] + rng.normal(0, 0.5, 40)[g])
        >>> y = np.where(rng.uniform(size=1000) < 0.3, 0, rng.poisson(mu))
        >>> model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(X, y, groups=g)
        >>> model.confint().round(3)
                        2.5 %  97.5 %
        .sig01            NaN     NaN
        (Intercept)     0.645   0.948
        x0              0.307   0.417
        zi~(Intercept) -0.894  -0.555
        """
        count = super().confint(
            method,
            level,
            X=X,
            y=y,
            groups=groups,
            sample_weight=sample_weight,
            offset=offset,
            parm=parm,
            n_boot=n_boot,
            random_state=random_state,
            n_jobs=n_jobs,
            progress=progress,
        )
        z = stats.norm.ppf(0.5 + level / 2.0)
        zi = pd.DataFrame(
            {
                count.columns[0]: self.fixef_zi_ - z * self.fixef_zi_se_,
                count.columns[1]: self.fixef_zi_ + z * self.fixef_zi_se_,
            }
        )
        zi.index = [f"zi~{name}" for name in zi.index]
        return pd.concat([count, zi])


ZeroInflatedPoissonGLMMRegressor.__doc__ = f"""Zero-inflated Poisson GLMM, fitted as glmmTMB's ``ziformula``.

    Each count is a structural zero with probability ``p_ij`` and otherwise a
    Poisson draw::

        P(y_ij = 0) = p_ij + (1 - p_ij) exp(-mu_ij),
        P(y_ij = k) = (1 - p_ij) Poisson(k; mu_ij)               (k > 0),
        log(mu_ij)   = offset_ij + X_ij beta + Z_ij b_i,     b_i ~ N(0, Sigma),
        logit(p_ij)  = XZ_ij beta_zi,

    with ``XZ`` the columns of X named by ``zero_inflation`` (and an intercept
    of its own). ``beta``, ``beta_zi`` and ``theta`` maximise the Laplace
    approximation over the count model's random effects, with the observed
    information as glmmTMB. This is ``glmmTMB(y ~ X + (Z | group), ziformula
    = ~XZ, family = poisson)`` in R.

    Parameters
    ----------
    {RANDOM_EFFECTS_DOC}
    zero_inflation : list of str or int, default=None
        Columns of X (names for a DataFrame, positions otherwise) in the
        zero-inflation model; ``None`` uses all of them, ``[]`` only its
        intercept.
    {FIXED_EFFECTS_DOC}
    {GROUPS_DOC}
    max_iter : int, default=500
        Iteration limit of the joint (theta, beta, beta_zi) optimisation; must be >= 1.
    tol : float, default=1e-10
        That optimisation stops when the Newton decrement is below ``tol``; must be > 0.
    {SOLVER_OPTIONS_DOC}

    Attributes
    ----------
    fixef_zi_ : pandas.Series
        Zero-inflation coefficients (log-odds of a structural zero),
        ``"(Intercept)"`` first, then the ``zero_inflation`` columns.
    fixef_zi_se_ : pandas.Series
        Their standard errors.
    vcov_zi_ : pandas.DataFrame
        Their covariance matrix.
    {ATTRIBUTES_DOC}

    See Also
    --------
    {see_also("ZeroInflatedPoissonGLMMRegressor")}

    Notes
    -----
    ``predict`` returns the expected count ``(1 - p) mu``; ``predict_zero_proba``
    the probability of a structural zero (or of any zero). ``score`` is D^2 of
    the Poisson deviance of ``predict``. ``y`` must be whole counts. Without
    ``groups`` the model is the zero-inflated Poisson GLM. ``fixef_``,
    ``fixef_se_``, ``vcov_`` and ``coef_`` describe the count model; AIC and
    BIC count both parts. Standard errors come from the Hessian in (theta,
    beta, beta_zi), as glmmTMB's ``sdreport``. Profile and bootstrap intervals
    are not available for this model.

    References
    ----------
    Lambert, D. (1992). Zero-inflated Poisson regression, with an application
    to defects in manufacturing. Technometrics 34(1), 1-14.
    Brooks, M. E. et al. (2017). glmmTMB balances speed and flexibility among
    packages for zero-inflated generalized linear mixed modeling. The R
    Journal 9(2), 378-400.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(40), 25)
    >>> x = rng.normal(size=1000)
    >>> mu = np.exp(0.8 + 0.4 * x + rng.normal(0, 0.5, 40)[g])
    >>> y = np.where(rng.uniform(size=1000) < 0.3, 0, rng.poisson(mu))
    >>> model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(x.reshape(-1, 1), y, groups=g)
    >>> bool(abs(model.predict_zero_proba(x[:1].reshape(-1, 1))[0] - 0.3) < 0.05)
    True
    """
