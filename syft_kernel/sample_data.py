"""Generated sample data for the demo and the tutorials: a hospital's monthly birth records."""

from __future__ import annotations

import numpy as np
import pandas as pd

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def birth_records(month: int = 2, rows: int = 3000, seed: int = 2026) -> pd.DataFrame:
    """Synthetic births for one month of 2026: weight (kg), height (cm), gestation, mother."""
    rng = np.random.default_rng(seed + month)
    weeks = np.clip(rng.normal(39.0, 1.8, rows), 26, 43).round(1)
    weight = np.clip(3.4 + 0.18 * (weeks - 39.0) + rng.normal(0, 0.45, rows), 0.6, 5.9).round(3)
    height = np.clip(50.0 + 2.2 * (weight - 3.4) + rng.normal(0, 1.8, rows), 30, 60).round(1)
    days = pd.Timestamp(2026, month, 1).days_in_month
    return pd.DataFrame(
        {
            "mother_id": rng.integers(100_000, 999_999, rows),
            "mother_age": np.clip(rng.normal(31, 5.5, rows), 16, 50).round().astype(np.int64),
            "weeks": weeks,
            "weight": weight,
            "height": height,
            "sex": pd.Categorical(rng.choice(["F", "M"], rows), categories=["F", "M"]),
            "delivery": pd.Categorical(
                rng.choice(["vaginal", "caesarean"], rows, p=[0.7, 0.3]), categories=["vaginal", "caesarean"]
            ),
            "day": pd.to_datetime([f"2026-{month:02d}-{d:02d}" for d in rng.integers(1, days + 1, rows)]),
        }
    )
