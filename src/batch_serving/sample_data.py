"""A realistic churn-like customer feature table, written as date-partitioned Parquet.

Deterministic per (seed, date) so reruns reproduce the same warehouse; used by the demo,
the tests and the benchmarks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

NUMERIC = ("tenure_months", "monthly_charges", "total_charges", "support_calls", "usage_gb")
CATEGORICAL = ("contract", "payment_method")
FEATURES = NUMERIC + CATEGORICAL
ENTITY = "customer_id"
# the events of ``customer_features`` (without the label) as a stream's `columns` (Spark DDL)
EVENT_DDL = (
    "customer_id BIGINT, tenure_months BIGINT, monthly_charges DOUBLE, total_charges DOUBLE, "
    "support_calls BIGINT, usage_gb DOUBLE, contract STRING, payment_method STRING"
)
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "e-check", "mailed-check")


def customer_features(rows: int, seed: int = 7, id_offset: int = 0) -> pd.DataFrame:
    """``rows`` customers with numeric and categorical features and a ``churned`` label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows).astype(np.int64)
    monthly = np.round(rng.gamma(4.0, 17.0, rows), 2)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.20])
    payment = rng.choice(PAYMENTS, rows)
    support = rng.poisson(1.2, rows).astype(np.int64)
    usage = np.round(rng.lognormal(3.0, 0.8, rows), 3)
    logit = (
        -1.0
        - 0.04 * tenure
        + 0.012 * monthly
        + 0.45 * support
        + np.where(contract == "month-to-month", 1.1, -0.6)
        + np.where(payment == "e-check", 0.5, 0.0)
    )
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {
            ENTITY: np.arange(id_offset, id_offset + rows, dtype=np.int64),
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": np.round(monthly * np.maximum(tenure, 1), 2),
            "support_calls": support,
            "usage_gb": usage,
            "contract": contract,
            "payment_method": payment,
            "churned": churned.astype(np.int64),
        }
    )


def write_partition(
    table_root: Path,
    run_date: dt.date,
    frame: pd.DataFrame,
    files: int = 2,
    partition_column: str = "ds",
) -> Path:
    """Write ``frame`` as ``files`` Parquet files under ``<root>/<col>=<date>/`` (replacing it),
    then its ``_SUCCESS`` marker, last, as Spark and warehouse loaders do (the Airflow input
    sensor waits for it; readers skip names starting with ``_``)."""
    out = table_root / f"{partition_column}={run_date.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "_SUCCESS").unlink(missing_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    step = max(1, -(-table.num_rows // files))
    for i in range(files):
        pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").touch()
    return out


def write_warehouse(
    table_root: Path, dates: list[dt.date], rows: int, seed: int = 7, files: int = 2
) -> list[Path]:
    """One partition per date; each date gets its own (deterministic) customers' snapshot."""
    written = []
    for i, day in enumerate(dates):
        frame = customer_features(rows, seed=seed + i).drop(columns=["churned"])
        written.append(write_partition(table_root, day, frame, files=files))
    return written
