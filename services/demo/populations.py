"""How each demo model's world behaves: who arrives, what truly happens to them, how that drifts.

One population, one outcome and (for credit-risk) one drift function per story, as pure functions of a
numpy generator, so that ``stories`` can draw training snapshots, references and logs from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import numpy as np
import pandas as pd

# (rng, drift per row in [0, 1], hour of day per row) -> the feature and sensitive columns
Population = Callable[[np.random.Generator, np.ndarray, np.ndarray], pd.DataFrame]
# (population, rng) -> the true outcome per row (0/1 for classifiers, a number for regressors)
Outcome = Callable[[pd.DataFrame, np.random.Generator], np.ndarray]
# day position in the window (0 = start, fractional) -> drift in [0, 1]
Drift = Callable[[np.ndarray], np.ndarray]


def no_drift(position: np.ndarray) -> np.ndarray:
    """The default: every feature keeps its training distribution."""
    return np.zeros_like(np.asarray(position, dtype=float))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, 1.0 / (1.0 + np.exp(-z)))


def choice(rng: np.random.Generator, values: tuple[str, ...], p: tuple[float, ...], n: int) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=np.asarray(p) / np.sum(p))]


def _driftingchoice(rng: np.random.Generator, values: tuple[str, ...], before: tuple[float, ...],
                     after: tuple[float, ...], drift: np.ndarray) -> np.ndarray:
    """Categorical draw whose probabilities move from ``before`` to ``after`` with the drift."""
    p = np.outer(1 - drift, before) + np.outer(drift, after)
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    index = (rng.random(len(drift))[:, None] > cumulative).sum(axis=1)
    return cast(np.ndarray, np.asarray(values, dtype=object)[np.minimum(index, len(values) - 1)])


def _effect(values: np.ndarray, effects: Mapping[str, float]) -> np.ndarray:
    """Additive effect of each category (0 for categories not named)."""
    return cast(np.ndarray, pd.Series(values).map(effects).fillna(0.0).to_numpy(dtype=float))


def credit_risk_population(rng: np.random.Generator, drift: np.ndarray, hour: np.ndarray) -> pd.DataFrame:
    n = len(drift)
    age = np.clip(np.rint(rng.normal(42, 12, n)), 18, 80).astype(np.int64)
    return pd.DataFrame({
        # The drift story: applicants get poorer and more indebted, and the region mix moves.
        "income": np.round(np.exp(rng.normal(np.log(52_000), 0.45, n)) * (1 - 0.28 * drift), 2),
        "age": age,
        "debt_ratio": np.round(np.clip(rng.beta(2, 5, n) + 0.15 * drift, 0, 1.5), 4),
        "credit_history_months": np.clip(np.rint(rng.normal(110, 55, n)), 0, 480).astype(np.int64),
        "region": _driftingchoice(rng, ("north", "south", "east", "west"),
                                   (0.30, 0.25, 0.25, 0.20), (0.12, 0.50, 0.18, 0.20), drift),
        "employment_type": choice(rng, ("salaried", "self_employed", "contract", "unemployed"),
                                   (0.62, 0.18, 0.15, 0.05), n),
        # Independent of every feature: credit-risk stays fair across genders.
        "gender": choice(rng, ("F", "M"), (0.49, 0.51), n),
    })


def credit_risk_outcome(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """1 = the applicant defaults."""
    z = (-1.7
         - 1.1 * (np.log(df["income"].to_numpy()) - np.log(52_000)) / 0.45
         + 4.5 * (df["debt_ratio"].to_numpy() - 0.29)
         - 0.006 * (df["credit_history_months"].to_numpy() - 110)
         - 0.015 * (df["age"].to_numpy() - 42)
         + _effect(df["employment_type"].to_numpy(), {"unemployed": 1.2, "contract": 0.5, "self_employed": 0.25})
         + _effect(df["region"].to_numpy(), {"south": 0.2, "north": -0.1})
         # Thresholds and interactions a linear model misses, so boosting earns its keep.
         + 1.4 * (df["debt_ratio"].to_numpy() > 0.45)
         + 1.0 * ((df["employment_type"].to_numpy() == "contract") & (df["income"].to_numpy() < 40_000)))
    return (rng.random(len(df)) < _sigmoid(z)).astype(np.int64)


def loan_approval_population(rng: np.random.Generator, drift: np.ndarray, hour: np.ndarray) -> pd.DataFrame:
    n = len(drift)
    gender = choice(rng, ("F", "M"), (0.5, 0.5), n)
    female = (gender == "F").astype(float)
    age_band = choice(rng, ("18-25", "26-40", "41-60", "61+"), (0.15, 0.40, 0.33, 0.12), n)
    band_score = _effect(age_band, {"18-25": -30.0, "41-60": 15.0, "61+": 10.0})
    return pd.DataFrame({
        # The fairness story: in the historical data women earn less and carry lower credit
        # scores, so a model trained on it approves them less often without seeing gender.
        "income": np.round(np.exp(rng.normal(np.log(62_000) - 0.17 * female, 0.38, n)), 2),
        "loan_amount": np.round(np.exp(rng.normal(np.log(16_000), 0.55, n)), -2),
        "term_months": rng.choice(np.array([12, 24, 36, 48, 60], dtype=np.int64), size=n,
                                  p=[0.10, 0.20, 0.35, 0.15, 0.20]),
        "credit_score": np.clip(np.rint(rng.normal(690 - 16 * female + band_score, 55)), 300, 850).astype(np.int64),
        "purpose": choice(rng, ("debt_consolidation", "home_improvement", "car", "education", "business"),
                           (0.35, 0.20, 0.20, 0.10, 0.15), n),
        "gender": gender,
        "age_band": age_band,
    })


def loan_approval_outcome(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """1 = the loan is repaid (so it should be approved)."""
    burden = np.log(df["loan_amount"].to_numpy() / df["income"].to_numpy()) - np.log(16_000 / 62_000)
    z = (0.25
         + 1.6 * (np.log(df["income"].to_numpy()) - np.log(62_000)) / 0.38
         + 1.5 * (df["credit_score"].to_numpy() - 690) / 55
         - 0.9 * burden / 0.65
         - 0.01 * (df["term_months"].to_numpy() - 36)
         + _effect(df["purpose"].to_numpy(), {"business": -0.5, "education": -0.2, "car": 0.2}))
    return (rng.random(len(df)) < _sigmoid(z)).astype(np.int64)


def fraud_population(rng: np.random.Generator, drift: np.ndarray, hour: np.ndarray) -> pd.DataFrame:
    n = len(drift)
    return pd.DataFrame({
        "amount": np.round(np.exp(rng.normal(np.log(45), 1.0, n)), 2),
        "merchant_risk": np.round(rng.beta(2, 8, n), 4),
        "hour_of_day": hour.astype(np.int64),  # the hour the request arrived: fraud peaks at night
        "account_age_days": np.clip(np.rint(rng.exponential(700, n)), 0, 5_000).astype(np.int64),
        "channel": choice(rng, ("web", "app", "pos"), (0.35, 0.45, 0.20), n),
        "country": choice(rng, ("US", "GB", "DE", "FR", "BR", "IN"), (0.55, 0.12, 0.10, 0.08, 0.08, 0.07), n),
    })


def fraud_outcome(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """1 = the transaction is fraudulent (a chargeback arrives)."""
    hour = df["hour_of_day"].to_numpy()
    z = (-4.3
         + 0.8 * np.log(df["amount"].to_numpy() / 45)
         + 7.0 * (df["merchant_risk"].to_numpy() - 0.2)
         + 1.2 * ((hour < 6) | (hour >= 23))
         - 0.6 * (np.log1p(df["account_age_days"].to_numpy()) - np.log1p(700))
         + _effect(df["channel"].to_numpy(), {"web": 0.6, "pos": -0.6})
         + _effect(df["country"].to_numpy(), {"BR": 0.9, "IN": 0.7})
         # Risky merchants with large amounts are where fraud concentrates: an interaction.
         + 2.0 * ((df["merchant_risk"].to_numpy() > 0.3) & (df["amount"].to_numpy() > 120)))
    return (rng.random(len(df)) < _sigmoid(z)).astype(np.int64)


def demand_population(rng: np.random.Generator, drift: np.ndarray, hour: np.ndarray) -> pd.DataFrame:
    n = len(drift)
    return pd.DataFrame({
        "temperature": np.round(rng.normal(14, 8, n), 1),
        "price": np.round(np.clip(rng.normal(4.0, 0.7, n), 1.5, 8.0), 2),
        "footfall": np.clip(np.rint(rng.normal(1_200, 320, n)), 100, 3_000).astype(np.int64),
        "promo": choice(rng, ("none", "discount", "bundle"), (0.70, 0.20, 0.10), n),
        "store_type": choice(rng, ("urban", "suburban", "rural"), (0.50, 0.35, 0.15), n),
    })


def demand_outcome(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Units sold in the forecast period."""
    temperature = df["temperature"].to_numpy()
    units = (40
             + 0.09 * df["footfall"].to_numpy()
             - 22 * (df["price"].to_numpy() - 4.0)
             + 1.8 * np.clip(temperature - 18, 0, None)
             - 0.8 * np.clip(5 - temperature, 0, None)
             + _effect(df["promo"].to_numpy(), {"discount": 28.0, "bundle": 14.0})
             + _effect(df["store_type"].to_numpy(), {"urban": 15.0, "rural": -20.0})
             + rng.normal(0, 10, len(df)))
    return cast(np.ndarray, np.round(np.clip(units, 0, None), 1))


def credit_risk_drift(position: np.ndarray) -> np.ndarray:
    """No drift until day 16, then a ramp over five days to the full shift."""
    return np.clip((np.asarray(position, dtype=float) - 16.0) / 5.0, 0.0, 1.0)


# ---------------------------------------------------------------- issue 14's stories (added after the four above)
# Both act on the prediction log only (training snapshots and references keep the old world), and draw
# from random streams of their own, so every row they do not touch is the row the log had before them.

# (population, day position per row, rng) -> the population as it arrives (the identity: nothing changes)
Shift = Callable[[pd.DataFrame, np.ndarray, np.random.Generator], pd.DataFrame]
# (population, day position per row, latency in ms, rng) -> the latency the request really took
Slowdown = Callable[[pd.DataFrame, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

LOAN_SLOWDOWN_DAY = 21  # business applications wait on a company-registry check from this day of the window
FRAUD_WAVE_DAY = 28  # the card-testing wave starts on this day (the chargeback feed stops on the same day)
FRAUD_WAVE_SHARE = 0.7  # of the transactions once the wave is at full strength (a two-day ramp)


def no_shift(df: pd.DataFrame, position: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    return df


def loan_business_registry_check(df: pd.DataFrame, position: np.ndarray, latency: np.ndarray,
                                 rng: np.random.Generator) -> np.ndarray:
    """From LOAN_SLOWDOWN_DAY every business application also waits on a company-registry lookup (log-normal,
    median 60 ms but a long tail, p95 450 ms), so the business segment's p95 latency goes from about 140 ms to
    about 500 ms (SLO 300 ms) while the model's overall p95 stays around 200 ms: only a rule naming the
    segment sees it. Nothing else changes (no drift, no change in scores or labels)."""
    hit = (df["purpose"].to_numpy() == "business") & (np.asarray(position) >= LOAN_SLOWDOWN_DAY)
    extra = np.exp(rng.normal(np.log(60), np.log(450 / 60) / 1.6448536269514722, len(df)))
    return np.where(hit, latency + extra, latency)


def fraud_card_testing_wave(df: pd.DataFrame, position: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """From FRAUD_WAVE_DAY a wave of mid-risk transactions (new accounts, web, mid-risk merchants, modest
    amounts) takes a growing share of the traffic. The world's rules (``fraud_outcome``) do not change, so
    the model stays calibrated, but these transactions all look alike to it: its scores bunch in the
    middle and its true AUC falls. CBPE sees that from the scores alone, while no label arrives."""
    strength = np.clip((np.asarray(position, dtype=float) - FRAUD_WAVE_DAY) / 2.0, 0.0, 1.0)
    wave = rng.random(len(df)) < FRAUD_WAVE_SHARE * strength
    n = int(wave.sum())
    if n == 0:
        return df
    shifted = df.copy()
    shifted.loc[wave, "amount"] = np.round(np.exp(rng.normal(np.log(60), 0.15, n)), 2)
    shifted.loc[wave, "merchant_risk"] = np.round(rng.uniform(0.30, 0.33, n), 4)
    shifted.loc[wave, "account_age_days"] = rng.integers(14, 31, n)
    shifted.loc[wave, "channel"] = "web"
    shifted.loc[wave, "country"] = "US"
    return shifted
