"""The estimators' methods that need the data again: intervals, residuals, simulation.

A fitted estimator keeps estimates only, so these methods take ``X, y,
groups`` (and the fit's ``sample_weight``, ``offset``). Profile and bootstrap
intervals rebuild the model's problem from them (:meth:`_InferenceMixin._problem_for`)
and check that it reproduces the fitted deviance -- other data would give
intervals for another model -- then profile it (:mod:`sklearn_glmm._core._profile`)
or refit it (:func:`sklearn_glmm._core.bootstrap_replicate`). The tables are
laid out by :mod:`sklearn_glmm.results._intervals`.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._core import LMMProfileProblem, ProfileProblem, bootstrap_replicate, fit_lmm
from ._core._lmm import LMMResult
from .design import groups_to_frame, groups_to_series
from .design._builder import factor_labels
from .results._intervals import (
    CONFINT_METHODS,
    check_level,
    conf_columns,
    engine_positions,
    interval_names,
    percentile_intervals,
    select_rows,
    wald_intervals,
)
from .utils._validation import EXACT_FIT_NOTE, UNBOUNDED_NOTE

__all__ = ["_InferenceMixin", "RESIDUAL_KINDS"]

RESIDUAL_KINDS = ("response", "pearson", "deviance")

#: relative agreement of the deviance of the data passed to an inference method with the fitted one
_SAME_DATA_RTOL = 1e-6


class _InferenceMixin:
    """``confint``, ``residuals`` and ``simulate`` of the mixed-model estimators."""

    #: the residual kinds this model has, and the default one
    _residual_kinds = RESIDUAL_KINDS
    _default_residual_kind = "deviance"

    # -- the problem of the training data ------------------------------------------
    def _problem_for(self, X, y, groups, sample_weight, offset, what: str):
        """The fitted model's problem rebuilt from the training data, checked against the fit.

        A formula-fitted model takes its own data frame when no data are given.
        """
        check_is_fitted(self, "fixef_")
        if not self.ranef_:
            raise ValueError(
                f"{what} needs a mixed model: this one was fitted without groups (a plain GLM). "
                "Use method='wald', or refit with groups=."
            )
        if X is not None or self.formula_data() is not None:
            X, y, groups, sample_weight, offset, _ = self._lme4_data(
                X, y, groups, sample_weight, offset, need_y=True
            )
        if X is None or y is None or (groups is None and self.group_column is None):
            raise TypeError(
                f"{what} refits the model, and a fitted estimator keeps estimates, not data: pass "
                "the data it was fitted on, e.g. confint(method='profile', X=X, y=y, groups=groups) "
                "(with the same sample_weight and offset as in fit)."
            )
        design, n = self._design_for(X, groups)
        if any(np.any(term.codes < 0) for term in design.terms):
            raise ValueError(
                f"{what}: groups has levels not seen in fit; pass the data the model was fitted on."
            )
        y = self._response_for(y, n)
        w = self._check_sample_weight(sample_weight, n)
        off = self._check_offset(offset, n)
        problem = self._problem(design, y, w, off, self._controls())
        result = self.fit_summary_
        ev = problem.evaluate(
            result.theta,
            result.coef if not isinstance(result, LMMResult) else None,
            result.param,
            result.u,
            gradient=False,
        )
        if not abs(ev.deviance - result.deviance) <= _SAME_DATA_RTOL * max(1.0, abs(result.deviance)):
            raise ValueError(
                f"{what}: X, y, groups (with sample_weight and offset) give deviance {ev.deviance:.6f} at the "
                f"estimates, not the fitted {result.deviance:.6f}; pass the data the model was fitted on."
            )
        return problem

    # -- intervals -------------------------------------------------------------------
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
        """Confidence intervals, as lme4's ``confint``.

        Parameters
        ----------
        method : {"wald", "profile", "bootstrap"}, default="wald"
            ``"wald"``: ``estimate +- z SE`` for the fixed effects (NaN for the
            variance components, as lme4). ``"profile"``: the profile likelihood.
            ``"bootstrap"``: percentile intervals of ``n_boot`` refits to
            responses simulated with new random effects (lme4's ``bootMer``,
            ``use.u = FALSE``).
        level : float, default=0.95
        X, y, groups, sample_weight, offset
            The data the model was fitted on (profile and bootstrap refit the
            model; checked against the fitted deviance). A formula-fitted
            model uses its own data frame when they are omitted.
        parm : str or list of str, default=None
            Rows to compute (``".sig01"``, fixed-effect names); all when None.
        n_boot, random_state, n_jobs, progress
            Bootstrap replicates, seed, joblib workers, a progress bar on stderr.

        Returns
        -------
        DataFrame
            Rows ``.sig01 ...`` (SDs and correlations, lme4's order; ``.sigma``
            for a linear mixed model) then the fixed effects; columns
            ``"2.5 %"``, ``"97.5 %"``. ``attrs["profiles"]`` (profile) or
            ``attrs["replicates"]`` and ``attrs["failed"]`` (bootstrap) keep the details.

        See Also
        --------
        summary : Estimates, standard errors and Wald tests.
        sklearn_glmm.plot.profile_zeta : The profiles behind ``method="profile"``.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
        >>> model.confint().round(4)                      # Wald: no interval for the SD
                       2.5 %  97.5 %
        .sig01           NaN     NaN
        (Intercept)   0.6124  0.8635
        day_centered -0.0130 -0.0052
        >>> model.confint("profile", X=X, y=y, groups=g).round(3)  # refits: takes the data
                      2.5 %  97.5 %
        .sig01        0.351   0.545
        (Intercept)   0.608   0.865
        day_centered -0.013  -0.005
        """
        check_is_fitted(self, "fixef_")
        if method not in CONFINT_METHODS:
            raise ValueError(f"method must be one of {list(CONFINT_METHODS)}; got {method!r}.")
        level = check_level(level)
        fixef_names = list(self.fixef_.index)
        n_theta = int(np.size(self.theta_))
        lmm = isinstance(self.fit_summary_, LMMResult)
        if method == "wald":
            return wald_intervals(self.fixef_, self.fixef_se_, n_theta, level, parm, lmm)
        what = f"confint(method={method!r})"
        self._check_inference_supported(what)
        _check_has_maximum(self.fit_summary_, what)
        if method == "bootstrap" and (
            isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2
        ):
            raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}.")
        names = interval_names(n_theta, fixef_names, sigma=lmm)
        selected = select_rows(names, parm)
        problem = self._problem_for(X, y, groups, sample_weight, offset, what)
        engine = engine_positions(n_theta, len(fixef_names), self._builder.theta_order_, sigma=lmm)
        if method == "profile":
            prof = self._profile_problem(problem)
            rows, profiles = [], {}
            for k in selected:
                iv = prof.interval(int(engine[k]), level)
                rows.append((iv.lower, iv.upper))
                profiles[names[k]] = pd.DataFrame(iv.path, columns=["value", "zeta"])
            table = pd.DataFrame(rows, index=[names[k] for k in selected], columns=conf_columns(level))
            table.attrs["profiles"] = profiles
            _warn_about_open_limits(table, self.singular_)
            return table
        replicates, failed = self._bootstrap(problem, n_boot, random_state, n_jobs, progress)
        replicates = pd.DataFrame(replicates[:, engine], columns=names)
        table = percentile_intervals(replicates, level).iloc[selected]
        table.attrs["replicates"] = replicates
        table.attrs["failed"] = failed
        return table

    def _response_for(self, y, n_samples: int) -> np.ndarray:
        """``y`` as the family saw it in fit (the classifier maps its labels to 0/1)."""
        return self._check_y(y, n_samples)

    def _check_inference_supported(self, what: str) -> None:
        """Models whose profile and bootstrap are not available raise here."""

    def _profile_problem(self, problem):
        result = self.fit_summary_
        if isinstance(result, LMMResult):
            # lme4 profiles the ML deviance: a REML fit is refitted by ML first
            ml = fit_lmm(problem.with_criterion(False)) if result.reml else result
            return LMMProfileProblem(problem, ml.theta, ml.sigma)
        return ProfileProblem(
            problem, result.theta, result.coef, result.u, result.deviance, result.hessian, result.param
        )

    def _bootstrap(self, problem, n_boot, random_state, n_jobs, progress):
        """``n_boot`` refits; each has its own seed spawned from ``random_state``, so the
        result does not depend on ``n_jobs``. Failed refits are counted and warned about."""
        from joblib import Parallel, delayed

        if isinstance(random_state, np.random.RandomState):
            random_state = int(random_state.randint(0, 2**31 - 1))
        if isinstance(random_state, np.random.Generator):
            random_state = int(random_state.integers(0, 2**63 - 1))
        seeds = np.random.SeedSequence(random_state).spawn(n_boot)
        result = self.fit_summary_
        parallel = Parallel(n_jobs=n_jobs, return_as="generator")
        draws = []
        for i, rep in enumerate(
            parallel(delayed(bootstrap_replicate)(problem, result, s) for s in seeds), start=1
        ):
            draws.append(rep)
            if progress:
                _progress_bar(i, n_boot)
        failed = [r.error for r in draws if r.error is not None]
        not_converged = sum(1 for r in draws if r.error is None and not r.converged)
        if failed:
            warnings.warn(
                f"{len(failed)} of {n_boot} bootstrap refits failed and are left out of the intervals "
                f"(first: {failed[0]}); see table.attrs['failed'].",
                UserWarning,
                stacklevel=3,
            )
        if not_converged:
            warnings.warn(
                f"{not_converged} of {n_boot} bootstrap refits did not converge; they are kept.",
                UserWarning,
                stacklevel=3,
            )
        return np.vstack([r.estimates for r in draws]), failed

    # -- residuals and simulation -------------------------------------------------------
    def residuals(
        self, X=None, y=None, groups=None, kind=None, sample_weight=None, offset=None
    ) -> np.ndarray:
        """Residuals of the fitted model on (X, y, groups), as lme4's ``residuals()``.

        Parameters
        ----------
        X, y, groups, sample_weight, offset
            As in ``fit``; usually the training data. A formula-fitted model
            also takes a raw data frame with the response column, or nothing
            for the rows of its fit (``residuals(m, type = "pearson")`` is
            ``m.residuals(kind="pearson")``).
        kind : {"response", "pearson", "deviance"}, default=None
            ``y - mu``; ``(y - mu) sqrt(w / V(mu))``; ``sign(y - mu) sqrt(w d(y,
            mu))``. None is the model's default: ``"deviance"`` (lme4's), or
            ``"pearson"`` for the zero-inflated model (which has no deviance
            residuals, as glmmTMB).

        Returns
        -------
        ndarray of shape (n_samples,)

        See Also
        --------
        fitted : The fitted means the residuals are taken from.
        sklearn_glmm.overdispersion : The Pearson chi-square check built on them.
        sklearn_glmm.plot.residuals_vs_fitted : Their plot against the fitted means.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
        >>> model.residuals(X, y, g, kind="pearson")[:3].round(4)
        array([-0.3312, -0.8425, -1.3587])
        """
        kind = self._default_residual_kind if kind is None else kind
        if kind not in self._residual_kinds:
            if kind in RESIDUAL_KINDS:
                raise ValueError(
                    f"Deviance residuals are not defined for {type(self).__name__} (as in glmmTMB); "
                    f"kind must be one of {list(self._residual_kinds)}."
                )
            raise ValueError(f"kind must be one of {list(self._residual_kinds)}; got {kind!r}.")
        X, y, groups, sample_weight, offset, _ = self._lme4_data(
            X, y, groups, sample_weight, offset, need_y=True
        )
        design, n = self._design_for(X, groups)
        off = self._offset_or_none(offset, n)
        y = self._check_y(y, n)
        w = self._check_sample_weight(sample_weight, n)
        mu = self._mean(design, off)
        if kind == "response":
            return y - mu
        if kind == "pearson":
            return self._unit_pearson(y, design, off, w)
        family = self._family_
        return np.sign(y - mu) * np.sqrt(np.maximum(w * family.unit_deviance(y, mu), 0.0))

    def _unit_pearson(self, y, design, offset, w) -> np.ndarray:
        """Pearson residuals with the family's unit variance (lme4's ``type = "pearson"``)."""
        mu = self._mean(design, offset)
        variance = self._family_.unit_variance(mu)
        return (y - mu) * np.sqrt(w / np.maximum(variance, 1e-300))

    def simulate(
        self, X=None, groups=None, n_simulations=1, random_state=None, conditional=True, offset=None
    ):
        """Responses simulated from the fitted model, shape (n_samples, n_simulations).

        With several grouping factors each factor's random effects are drawn
        independently, ``b_{k,g} ~ N(0, Sigma_k)``, one draw per distinct level
        of factor k in ``groups`` (rows sharing a level share it).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``predict``; a formula-fitted model also takes a raw data
            frame, or nothing for the rows of its fit (R's ``simulate(m)``).
        groups : array-like or DataFrame, default=None
            Group labels, as in ``fit``; required for a mixed model.
        n_simulations : int, default=1
        random_state : int, Generator or None, default=None
        conditional : bool, default=True
            True keeps the conditional modes of the levels seen in fit (lme4's
            ``simulate(m, re.form = NULL)``); new levels draw fresh effects,
            factor by factor. False draws new random effects for every level
            (``re.form = NA``, the parametric bootstrap's scheme).
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        ndarray of shape (n_samples, n_simulations)

        Notes
        -----
        Per simulation the draws are taken factor by factor in the model's
        order of the terms (most levels first), then the response.

        See Also
        --------
        sklearn_glmm.simulate : The same as a function (R's ``simulate(m)``).
        confint : ``method="bootstrap"`` refits to responses simulated with new random effects.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
        >>> model.simulate(X, g, n_simulations=5, random_state=0).shape
        (1500, 5)
        """
        if isinstance(n_simulations, bool) or not isinstance(n_simulations, (int, np.integer)):
            raise TypeError(f"n_simulations must be a positive integer; got {n_simulations!r}.")
        if n_simulations < 1:
            raise ValueError(f"n_simulations must be >= 1; got {n_simulations}.")
        if not isinstance(conditional, (bool, np.bool_)):
            raise TypeError(f"conditional must be True or False; got {conditional!r}.")
        rng = np.random.default_rng(random_state)
        X, _, groups, _, offset, _ = self._lme4_data(X, None, groups, None, offset, need_y=False)
        design, n = self._design_for(X, groups)
        eta_fixed = design.X @ self.fixef_.to_numpy()
        if offset is not None:
            eta_fixed = eta_fixed + self._offset_or_none(offset, n)
        mixed = bool(self.ranef_)
        if mixed and groups is None and self.group_column is None:
            raise ValueError(
                "simulate needs groups for a mixed model (the random effects are drawn per group); "
                "pass the group label of every row."
            )
        weights = np.ones(n)
        family = self._family_
        out = np.empty((n, int(n_simulations)))
        if not mixed:
            mu = family.link.inverse(eta_fixed)
            for s in range(out.shape[1]):
                out[:, s] = family.sample(mu, weights, rng)
            return out
        draws = self._level_draws(design, X, groups, n)
        for s in range(out.shape[1]):
            eta = eta_fixed.copy()
            for term, (labels, known, lam, b_fit) in zip(design.terms, draws):
                b = rng.standard_normal((known.size, term.q)) @ lam.T
                if conditional:
                    seen = known >= 0
                    b[seen] = b_fit[known[seen]]
                eta += np.einsum("nq,nq->n", term.Z, b[labels])
            out[:, s] = family.sample(family.link.inverse(eta), weights, rng)
        return out

    def _level_draws(self, design, X, groups, n: int) -> list[tuple]:
        """Per term: each row's distinct-level index, the fitted code of each distinct
        level (-1 = new), the scaled ``Lambda_k`` and the fitted modes ``b_k``."""
        builder = self._builder
        if groups is None:  # group_column: the grouping columns are in X
            _, groups = self._split_group_column(X, None)
        columns = builder.factor_columns
        if len(columns) == 1 and not (isinstance(groups, pd.DataFrame) and groups.shape[1] > 1):
            frame = groups_to_series(groups, n).rename(columns[0]).to_frame()
        else:
            frame = groups_to_frame(groups, n, columns)
        # the engine's theta (terms in design order) from the reported one
        theta = np.empty(self.theta_.size)
        theta[builder.theta_order_] = self.theta_
        scale = self._random_effect_scale()
        out, start = [], 0
        for term, b_fit in zip(design.terms, self._b):
            lam = term.lambda_(theta[start : start + term.n_theta]) * scale
            start += term.n_theta
            labels, uniques = pd.factorize(factor_labels(frame, term.factor))
            known = np.full(len(uniques), -1)
            known[labels] = term.codes  # the fitted level of each distinct label (-1 = new)
            out.append((labels, known, lam, np.asarray(b_fit)))
        return out


#: notes of fits whose likelihood has no maximum
_NO_MAXIMUM_NOTES = (EXACT_FIT_NOTE, UNBOUNDED_NOTE)


def _check_has_maximum(result, what: str) -> None:
    """Refuse profile and bootstrap intervals of a fit whose likelihood has no maximum."""
    notes = [] if result is None else [n for n in result.notes if n.startswith(_NO_MAXIMUM_NOTES)]
    if notes:
        raise ValueError(
            f"{what} needs the maximum of the likelihood, and this fit has none ({notes[0]}): profiles "
            "and refits around it mean nothing. Fix the model first (see the fit's warning); "
            "method='wald' still gives the fixed effects' Wald intervals."
        )


def _warn_about_open_limits(table: pd.DataFrame, singular: bool) -> None:
    """Say which profile limits are NaN: the profile never reached the level's deviance there."""
    open_rows = table.index[table.isna().any(axis=1)].tolist()
    if not open_rows:
        return
    why = (
        "the fit is singular (a variance at 0 or a correlation at +-1), where the profile is flat "
        "in some directions"
        if singular
        else "the likelihood is flat in that direction (a parameter the data barely identify)"
    )
    warnings.warn(
        f"The profile of {open_rows} does not reach the interval's deviance before the parameter's "
        f"bound, so those limits are NaN (lme4 reports NA too): {why}. Consider a simpler "
        "random_effects, or method='bootstrap'.",
        UserWarning,
        stacklevel=3,
    )


def _progress_bar(i: int, total: int, width: int = 30) -> None:
    done = int(width * i / total)
    end = "\n" if i == total else ""
    print(
        f"\rbootstrap [{'#' * done}{'.' * (width - done)}] {i}/{total}", end=end, file=sys.stderr, flush=True
    )
