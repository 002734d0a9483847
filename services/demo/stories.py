"""The demo's content as pure data: four models, their versions, 35 days of prediction logs.

Nothing here touches a file, a database or MLflow (``seed`` does the writing). Every random draw
comes from a numpy generator seeded from (story seed, purpose, version), so the same end date
always gives the same content, whatever order the pieces are built in.

The stories users should find on the dashboard:
- credit-risk drifts from the middle of the window: income down, debt_ratio up, region mix moves;
- loan-approval approves women clearly less often (demographic parity difference ~0.2);
- fraud-detection's p95 latency triples after version 4 goes live ~10 days before the end;
- demand-forecast is healthy: no drift, fast, almost no errors.
Issue 14 adds two, on the log only (training snapshots and references are unchanged):
- loan-approval's business applications slow down from day 21 (one segment's p95 over the SLO; the
  overall p95 stays under it);
- fraud-detection's labels stop for the last 7 days while a card-testing wave makes its scores, and
  so its CBPE estimate, fall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from services.demo.populations import (
    Drift,
    Outcome,
    Population,
    Shift,
    Slowdown,
    choice,
    credit_risk_drift,
    credit_risk_outcome,
    credit_risk_population,
    demand_outcome,
    demand_population,
    fraud_card_testing_wave,
    fraud_outcome,
    fraud_population,
    loan_approval_outcome,
    loan_approval_population,
    loan_business_registry_check,
    no_drift,
    no_shift,
)

WINDOW_DAYS = 35  # the log covers the 35 days ending at the end of the end date
TRAIN_ROWS = 5_000
HOLDOUT_ROWS = 2_000
REFERENCE_ROWS = 8_000
CANARY_SHARE = 0.10  # traffic the staging holder gets during its canary days
DECISION_THRESHOLD = 0.5
# Share of labels that have arrived, by days before the end date (0 = the end date itself);
# older rows are fully labelled. Ground truth (a default, a chargeback) arrives late.
LABEL_COVERAGE = (0.10, 0.30, 0.60, 0.85, 0.95)
WEEKEND_TRAFFIC = 0.8
ERROR_KINDS = ("error", "timeout")
ERROR_KIND_SHARE = (0.7, 0.3)
TIMEOUT_MS = 2_000.0
# Requests per hour of the day (UTC), relative: quiet nights, a midday and an evening peak.
DIURNAL = np.array([2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 10, 9, 8, 8, 8, 9, 9, 8, 6, 5, 4, 3], dtype=float)
DIURNAL /= DIURNAL.sum()
_PURPOSES = {"train": 1, "log": 2, "reference": 3, "shift": 4, "slowdown": 5}
_Z_95 = 1.6448536269514722  # standard normal 95th percentile: turns a p95 into a log-normal sigma


@dataclass(frozen=True)
class VersionSpec:
    """One registered model version: how it is trained and how fast it serves."""

    version: int
    algorithm: str
    params: Mapping[str, Any]
    trained_days_before_end: int
    latency_p50_ms: float
    latency_p95_ms: float
    note: str


@dataclass(frozen=True)
class ModelStory:
    """One demo model: its population, its versions and its deployment timeline."""

    name: str
    task: str  # "binary_classification" or "regression", as in tower.yaml
    owner: str
    team: str
    description: str
    seed: int
    daily_rows: int
    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    sensitive: tuple[str, ...]
    population: Population
    outcome: Outcome
    versions: tuple[VersionSpec, ...]
    # (first day index in the window, production version from that day on); the first entry
    # starts at day 0 and the last one is the production holder at the end.
    rollout: tuple[tuple[int, int], ...]
    staging: int
    canary_days: int  # the last days in which CANARY_SHARE of traffic goes to the staging holder
    error_rate: float
    tuning_versions: frozenset[int] = frozenset()  # versions trained as children of one tuning run
    drift: Drift = field(default=no_drift)
    # Issue 14's stories, on the log only: who arrives (shift), how long some requests take (slowdown), and
    # the last days whose labels never arrive (a broken label feed), on top of LABEL_COVERAGE.
    shift: Shift = field(default=no_shift)
    slowdown: Slowdown | None = None
    labels_stop_days: int = 0

    @property
    def features(self) -> tuple[str, ...]:
        return self.numerical + self.categorical

    @property
    def production(self) -> int:
        return self.rollout[-1][1]

    @property
    def is_classifier(self) -> bool:
        return self.task == "binary_classification"

    def version(self, number: int) -> VersionSpec:
        return next(spec for spec in self.versions if spec.version == number)


@dataclass(frozen=True)
class TrainedVersion:
    """A fitted version with everything its MLflow run records."""

    spec: VersionSpec
    model: Pipeline
    training_data: pd.DataFrame  # features, sensitive columns and the label
    metrics: dict[str, float]
    params: dict[str, str]
    data_version: str
    git_commit: str
    trained_at: datetime
    # feature -> share of the model's reliance on it (sums to 1), logged as `feature_importance.<feature>`
    importances: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- the four stories

DEMO_STORIES: tuple[ModelStory, ...] = (
    ModelStory(
        name="credit-risk", task="binary_classification", owner="alice", team="risk-modeling",
        description="Probability that a retail credit applicant defaults within 12 months.",
        seed=101, daily_rows=2_200,
        numerical=("income", "age", "debt_ratio", "credit_history_months"),
        categorical=("region", "employment_type"), sensitive=("gender",),
        population=credit_risk_population, outcome=credit_risk_outcome, drift=credit_risk_drift,
        versions=(
            VersionSpec(1, "logistic_regression", {"C": 1.0}, 120, 35, 85, "Baseline logistic regression."),
            VersionSpec(2, "logistic_regression", {"C": 0.3}, 75, 35, 85,
                        "Logistic regression with stronger regularisation; better calibrated."),
            VersionSpec(3, "gradient_boosting", {"n_estimators": 120, "max_depth": 3, "learning_rate": 0.1},
                        25, 45, 100, "Gradient boosting from the tuning sweep; higher AUC than the linear model."),
            VersionSpec(4, "gradient_boosting",
                        {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8},
                        6, 45, 100, "Gradient boosting, slower learning rate with subsampling; canary."),
        ),
        rollout=((0, 2), (12, 3)), staging=4, canary_days=4, error_rate=0.003,
        tuning_versions=frozenset({3, 4}),
    ),
    ModelStory(
        name="loan-approval", task="binary_classification", owner="bob", team="lending",
        description="Recommends approving a personal loan application (1 = approve).",
        seed=202, daily_rows=1_900,
        numerical=("income", "loan_amount", "term_months", "credit_score"),
        categorical=("purpose",), sensitive=("gender", "age_band"),
        population=loan_approval_population, outcome=loan_approval_outcome,
        versions=(
            VersionSpec(1, "logistic_regression", {"C": 1.0}, 150, 50, 120, "Baseline logistic regression."),
            VersionSpec(2, "random_forest", {"n_estimators": 80, "max_depth": 8, "min_samples_leaf": 5},
                        31, 60, 140, "Random forest on the refreshed applications snapshot."),
            VersionSpec(3, "gradient_boosting", {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.08},
                        5, 55, 130, "Gradient boosting candidate; canary."),
        ),
        rollout=((0, 1), (6, 2)), staging=3, canary_days=3, error_rate=0.003,
        slowdown=loan_business_registry_check,  # the segment story: business loans slow down from day 21
    ),
    ModelStory(
        name="fraud-detection", task="binary_classification", owner="carol", team="payments-risk",
        description="Scores card transactions for fraud in real time (1 = fraud).",
        seed=303, daily_rows=3_000,
        numerical=("amount", "merchant_risk", "hour_of_day", "account_age_days"),
        categorical=("channel", "country"), sensitive=(),
        population=fraud_population, outcome=fraud_outcome,
        versions=(
            VersionSpec(1, "logistic_regression", {"C": 1.0}, 200, 40, 95, "Baseline logistic regression."),
            VersionSpec(2, "random_forest", {"n_estimators": 60, "max_depth": 10, "min_samples_leaf": 3},
                        120, 50, 115, "Random forest."),
            VersionSpec(3, "gradient_boosting", {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1},
                        60, 55, 120, "Gradient boosting; the long-standing production model."),
            # The latency story: a much larger forest, p95 ~380 ms against an SLO of 250 ms.
            VersionSpec(4, "random_forest", {"n_estimators": 120, "max_depth": 12, "min_samples_leaf": 3},
                        12, 170, 380, "Large random forest; best AUC, but much slower."),
            VersionSpec(5, "gradient_boosting", {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05},
                        3, 55, 120, "Lean gradient boosting to restore latency; canary."),
        ),
        rollout=((0, 3), (25, 4)), staging=5, canary_days=2, error_rate=0.003,
        # The CBPE story: a card-testing wave from day 28 while the chargeback feed is down (no labels).
        shift=fraud_card_testing_wave, labels_stop_days=7,
    ),
    ModelStory(
        name="demand-forecast", task="regression", owner="dave", team="supply-chain",
        description="Forecasts units sold per store and product for the next period.",
        seed=404, daily_rows=1_600,
        numerical=("temperature", "price", "footfall"),
        categorical=("promo", "store_type"), sensitive=(),
        population=demand_population, outcome=demand_outcome,
        versions=(
            VersionSpec(1, "ridge", {"alpha": 1.0}, 140, 25, 60, "Baseline ridge regression."),
            VersionSpec(2, "random_forest_regressor", {"n_estimators": 60, "max_depth": 10, "min_samples_leaf": 5},
                        70, 35, 80, "Random forest regressor."),
            VersionSpec(3, "gradient_boosting_regressor",
                        {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}, 27, 35, 80,
                        "Gradient boosting regressor; lower MAE than the forest."),
            VersionSpec(4, "hist_gradient_boosting_regressor", {"max_iter": 150, "learning_rate": 0.1}, 4, 30, 70,
                        "Histogram gradient boosting candidate."),
        ),
        rollout=((0, 2), (10, 3)), staging=4, canary_days=0, error_rate=0.002,
    ),
)


def story(name: str) -> ModelStory:
    return next(s for s in DEMO_STORIES if s.name == name)


# ---------------------------------------------------------------- dates, rollout and random streams


def window_start(end_date: date) -> datetime:
    """Midnight (naive UTC) of the first day of the window."""
    return datetime.combine(end_date - timedelta(days=WINDOW_DAYS - 1), time())


def _production_on(s: ModelStory, day: np.ndarray) -> np.ndarray:
    starts = np.array([d for d, _ in s.rollout])
    versions = np.array([v for _, v in s.rollout])
    return versions[np.searchsorted(starts, day, side="right") - 1]


def _rng(s: ModelStory, purpose: str, version: int = 0) -> np.random.Generator:
    return np.random.default_rng([s.seed, _PURPOSES[purpose], version])


# ---------------------------------------------------------------- training


def _estimator(task: str, algorithm: str, params: Mapping[str, Any], seed: int) -> BaseEstimator:
    # n_jobs stays 1: the demo machine has two cores, and one thread keeps results reproducible.
    builders: dict[str, Callable[[], BaseEstimator]] = {
        "logistic_regression": lambda: LogisticRegression(max_iter=1_000, **params),
        "random_forest": lambda: RandomForestClassifier(random_state=seed, n_jobs=1, **params),
        "gradient_boosting": lambda: GradientBoostingClassifier(random_state=seed, **params),
        "ridge": lambda: Ridge(**params),
        "random_forest_regressor": lambda: RandomForestRegressor(random_state=seed, n_jobs=1, **params),
        "gradient_boosting_regressor": lambda: GradientBoostingRegressor(random_state=seed, **params),
        "hist_gradient_boosting_regressor": lambda: HistGradientBoostingRegressor(random_state=seed, **params),
    }
    return builders[algorithm]()


def _pipeline(s: ModelStory, spec: VersionSpec) -> Pipeline:
    prepare = ColumnTransformer([
        ("numerical", StandardScaler(), list(s.numerical)),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(s.categorical)),
    ])
    return Pipeline([("prepare", prepare),
                     ("model", _estimator(s.task, spec.algorithm, spec.params, s.seed + spec.version))])


def _sample(s: ModelStory, rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Rows from the training distribution (no drift), with their true outcome as ``label``."""
    hour = rng.choice(24, size=n, p=DIURNAL)
    data = s.population(rng, np.zeros(n), hour)
    data["label"] = s.outcome(data, rng)
    return data


def _metrics(s: ModelStory, model: Pipeline, holdout: pd.DataFrame) -> dict[str, float]:
    truth = holdout["label"].to_numpy()
    if not s.is_classifier:
        predicted = model.predict(holdout[list(s.features)])
        return {"mae": float(mean_absolute_error(truth, predicted)),
                "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
                "r2": float(r2_score(truth, predicted))}
    score = model.predict_proba(holdout[list(s.features)])[:, 1]
    predicted = (score >= DECISION_THRESHOLD).astype(int)
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "precision": float(precision_score(truth, predicted, zero_division=0)),
            "recall": float(recall_score(truth, predicted, zero_division=0)),
            "f1": float(f1_score(truth, predicted, zero_division=0)),
            "roc_auc": float(roc_auc_score(truth, score))}


IMPORTANCE_PREFIX = "feature_importance."


def feature_importances(s: ModelStory, model: Pipeline, holdout: pd.DataFrame) -> dict[str, float]:
    """How much the fitted model relies on each input feature, normalised to sum to 1.

    Trees give ``feature_importances_``, linear models ``|coef_|`` (on standardised inputs, so comparable);
    a one-hot encoded feature is the sum of its columns. Histogram gradient boosting has neither, so it
    gets the permutation importance on the holdout (mean loss of score, clipped at 0). What the root-cause
    panel reads to weigh a drifting feature.
    """
    estimator = model.named_steps["model"]
    if hasattr(estimator, "feature_importances_") or hasattr(estimator, "coef_"):
        weights = estimator.feature_importances_ if hasattr(estimator, "feature_importances_") else estimator.coef_
        raw = np.abs(np.ravel(weights))
        names = model.named_steps["prepare"].get_feature_names_out()
        per_feature = dict.fromkeys(s.features, 0.0)
        categorical = model.named_steps["prepare"].named_transformers_["categorical"]
        for name, weight in zip(names, raw, strict=True):
            kind, _, column = str(name).partition("__")
            if kind == "categorical":  # "region_north" -> region (the encoder's own categories tell where)
                column = next(f for f, cats in zip(s.categorical, categorical.categories_, strict=True)
                              if column in {f"{f}_{c}" for c in cats})
            per_feature[column] += float(weight)
    else:
        from sklearn.inspection import permutation_importance

        found = permutation_importance(model, holdout[list(s.features)], holdout["label"], n_repeats=3,
                                       random_state=s.seed)
        per_feature = {f: max(float(v), 0.0) for f, v in zip(s.features, found.importances_mean, strict=True)}
    total = sum(per_feature.values())
    return {f: (v / total if total > 0 else 0.0) for f, v in per_feature.items()}


def train_version(s: ModelStory, spec: VersionSpec, end_date: date) -> TrainedVersion:
    """Fit one version on its own training snapshot and score it on a holdout."""
    data = _sample(s, _rng(s, "train", spec.version), TRAIN_ROWS + HOLDOUT_ROWS)
    training, holdout = data.iloc[:TRAIN_ROWS].reset_index(drop=True), data.iloc[TRAIN_ROWS:]
    model = _pipeline(s, spec)
    with threadpool_limits(limits=1):  # see _predict
        model.fit(training[list(s.features)], training["label"])
        metrics = _metrics(s, model, holdout)
        importances = feature_importances(s, model, holdout)
    trained_at = datetime.combine(end_date - timedelta(days=spec.trained_days_before_end), time(9, 30))
    snapshot = (trained_at - timedelta(days=1)).date()
    params = {"algorithm": spec.algorithm, **{k: str(v) for k, v in spec.params.items()},
              "training_rows": str(TRAIN_ROWS), "holdout_rows": str(HOLDOUT_ROWS),
              "features": ",".join(s.features), "decision_threshold": str(DECISION_THRESHOLD)}
    return TrainedVersion(
        spec=spec, model=model, training_data=training, metrics=metrics,
        params={k: str(v) for k, v in params.items()},
        data_version=f"{snapshot:%Y.%m.%d}",
        # A fake but stable commit: the same version always points at the same "code".
        git_commit=hashlib.sha1(f"{s.name}:{spec.version}".encode(), usedforsecurity=False).hexdigest(),
        trained_at=trained_at, importances=importances,
    )


# ---------------------------------------------------------------- logs and reference


def _arrivals(s: ModelStory, rng: np.random.Generator, end_date: date) -> tuple[np.ndarray, np.ndarray]:
    """Day index and microseconds since window start of every request, sorted by time."""
    first = window_start(end_date).date()
    days, offsets = [], []
    for day in range(WINDOW_DAYS):
        weekday = (first + timedelta(days=day)).weekday()
        n = int(round(s.daily_rows * (WEEKEND_TRAFFIC if weekday >= 5 else 1.0) * rng.uniform(0.95, 1.05)))
        hour = rng.choice(24, size=n, p=DIURNAL)
        micros = (day * 86_400 + hour * 3_600) * 1_000_000 + rng.integers(0, 3_600_000_000, size=n)
        days.append(np.full(n, day))
        offsets.append(micros)
    day_index, micros = np.concatenate(days), np.concatenate(offsets)
    order = np.argsort(micros, kind="stable")
    return day_index[order], micros[order]


def _served_versions(s: ModelStory, rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    version = _production_on(s, day)
    canary = (day >= WINDOW_DAYS - s.canary_days) & (rng.random(len(day)) < CANARY_SHARE)
    return np.where(canary, s.staging, version)


def _latencies(s: ModelStory, rng: np.random.Generator, version: np.ndarray) -> np.ndarray:
    """Log-normal latency per version, fitted to that version's p50 and p95."""
    latency = np.empty(len(version))
    for number in np.unique(version):
        spec = s.version(int(number))
        sigma = np.log(spec.latency_p95_ms / spec.latency_p50_ms) / _Z_95
        rows = version == number
        latency[rows] = np.exp(rng.normal(np.log(spec.latency_p50_ms), sigma, rows.sum()))
    return latency


def _predict(s: ModelStory, models: Mapping[int, Pipeline], data: pd.DataFrame,
             version: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Prediction (and class-1 score for classifiers) from the model of the version that served."""
    prediction = np.empty(len(data))
    score = np.empty(len(data)) if s.is_classifier else None
    # One thread for OpenMP/BLAS: on the two-core demo machine, HistGradientBoosting's OpenMP
    # threads competing with anything else running slowed seeding several times over.
    with threadpool_limits(limits=1):
        for number in np.unique(version):
            rows = version == number
            inputs = data.loc[rows, list(s.features)]
            if score is None:
                prediction[rows] = models[int(number)].predict(inputs)
            else:
                score[rows] = models[int(number)].predict_proba(inputs)[:, 1]
                prediction[rows] = score[rows] >= DECISION_THRESHOLD
    return prediction, score


def _label_arrived(rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    days_before_end = WINDOW_DAYS - 1 - day
    coverage = np.ones(len(day))
    for age, share in enumerate(LABEL_COVERAGE):
        coverage[days_before_end == age] = share
    return rng.random(len(day)) < coverage


def _statuses(s: ModelStory, rng: np.random.Generator, n: int) -> np.ndarray:
    failed = rng.random(n) < s.error_rate
    status = np.full(n, "ok", dtype=object)
    status[failed] = choice(rng, ERROR_KINDS, ERROR_KIND_SHARE, int(failed.sum()))
    return status


def _outputs(s: ModelStory, prediction: np.ndarray, score: np.ndarray | None, label: np.ndarray,
             ok: np.ndarray, arrived: np.ndarray) -> dict[str, Any]:
    """Prediction/score/label columns with their NULLs: none for failed requests, none before arrival."""
    if s.is_classifier:
        assert score is not None  # _predict scores every classifier
        return {"prediction": pd.Series(prediction, dtype="Int32").mask(~ok).array,
                "score": np.where(ok, score, np.nan),
                "label": pd.Series(label, dtype="Int32").mask(~arrived).array}
    return {"prediction": np.where(ok, prediction, np.nan), "label": np.where(arrived, label, np.nan)}


def prediction_log(s: ModelStory, models: Mapping[int, Pipeline], end_date: date) -> pd.DataFrame:
    """One row per request over the window, with logical column names (see seed for the mapping)."""
    rng = _rng(s, "log")
    day, micros = _arrivals(s, rng, end_date)
    hour = (micros // 3_600_000_000) % 24
    position = micros / 86_400_000_000
    data = s.shift(s.population(rng, s.drift(position), hour), position, _rng(s, "shift"))
    label = s.outcome(data, rng)
    version = _served_versions(s, rng, day)
    prediction, score = _predict(s, models, data, version)
    status = _statuses(s, rng, len(day))
    ok = status == "ok"
    latency = np.where(status == "timeout", TIMEOUT_MS + rng.uniform(0, 50, len(day)), _latencies(s, rng, version))
    if s.slowdown is not None:  # a timeout stays a timeout
        latency = np.where(status == "timeout", latency, s.slowdown(data, position, latency, _rng(s, "slowdown")))
    prefix = "".join(part[0] for part in s.name.split("-"))
    log = pd.DataFrame({
        "request_id": [f"{prefix}-{i:09d}" for i in range(len(day))],
        "timestamp": np.datetime64(window_start(end_date), "us") + micros.astype("timedelta64[us]"),
        "version": version.astype(str).astype(object),
        **_outputs(s, prediction, score, label, ok,
                   _label_arrived(rng, day) & (day < WINDOW_DAYS - s.labels_stop_days)),
        "latency_ms": np.round(latency, 1),
        "status": status,
    })
    return pd.concat([log, data[list(s.features + s.sensitive)]], axis=1)


def reference_sample(s: ModelStory, model: Pipeline, version: int) -> pd.DataFrame:
    """Rows from the training distribution scored by ``model``, fully labelled."""
    data = _sample(s, _rng(s, "reference"), REFERENCE_ROWS)
    served = np.full(len(data), version)
    prediction, score = _predict(s, {version: model}, data, served)
    everyone = np.ones(len(data), dtype=bool)
    reference = pd.DataFrame({"version": served.astype(str).astype(object),
                              **_outputs(s, prediction, score, data["label"].to_numpy(), everyone, everyone)})
    return pd.concat([reference, data[list(s.features + s.sensitive)]], axis=1)
