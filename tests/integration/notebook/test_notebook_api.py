"""The notebook API: ``score_frame`` (Arrow, pandas and Spark paths) and ``read_predictions``.

Expected scores come from the in-process oracle (``model.predict_proba`` on the same rows),
never from ``score_frame`` itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import builders
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import Scored, customers, labelled
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression

from batch_serving.errors import ConfigError, InputNotFoundError, MissingColumnsError
from batch_serving.notebook import parse_model_uri, read_predictions, score_frame
from batch_serving.tables.inputs import partition_path

LINEAGE = ["model_name", "model_version", "model_run_id", "scored_at"]


def input_partition(scored: Scored, day: dt.date) -> str:
    return partition_path(scored.cfg.input, day)


def by_id(ids: list[int], values: list[float]) -> dict[int, float]:
    return dict(zip(ids, values, strict=True))


def test_parse_model_uri() -> None:
    assert parse_model_uri("models:/churn@champion") == ("churn", "champion", None)
    assert parse_model_uri("models:/churn.v2/12") == ("churn.v2", None, 12)
    for bad in ("churn@champion", "models:/churn", "models:/churn/0", "runs:/abc/model"):
        with pytest.raises(ConfigError, match="models:/<name>@<alias>"):
            parse_model_uri(bad)


def test_arrow_input_equals_in_process_oracle(scored: Scored) -> None:
    day = scored.dates[1]
    table = pq.read_table(input_partition(scored, day))
    out = score_frame(
        table,
        scored.cfg.model.selector,
        tracking_uri=scored.cfg.model.tracking_uri,
        keep=["customer_id", "tenure_months"],
    )
    assert isinstance(out, pa.Table)
    assert out.column_names == [
        "customer_id",
        "tenure_months",
        "score",
        "error_class",
        "error_message",
        *LINEAGE,
    ]
    # rows in input order; a kept feature keeps its input values and type
    assert out["customer_id"].to_pylist() == table["customer_id"].to_pylist()
    assert out.schema.field("tenure_months").type == table.schema.field("tenure_months").type
    assert out["tenure_months"].equals(table["tenure_months"])
    assert out["error_class"].null_count == out.num_rows
    got = by_id(out["customer_id"].to_pylist(), out["score"].to_pylist())
    assert got == pytest.approx(scored.expected[day], abs=1e-12)
    assert set(out["model_name"].to_pylist()) == {"served"}
    assert set(out["model_version"].to_pylist()) == {1}


def test_pandas_input_returns_pandas_with_its_index(scored: Scored) -> None:
    day = scored.dates[0]
    frame = pq.read_table(input_partition(scored, day)).to_pandas()
    frame.index = frame.index + 1000
    model = f"models:/{scored.cfg.model.name}/1"  # a version, not an alias
    out = score_frame(frame, model, tracking_uri=scored.cfg.model.tracking_uri)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(frame.index)
    assert list(out.columns[: len(frame.columns)]) == list(frame.columns)  # keep: all columns
    expected = frame["customer_id"].map(scored.expected[day])
    np.testing.assert_allclose(out["score"], expected, rtol=0, atol=1e-12)


def test_spark_input_equals_in_process_oracle(spark: SparkSession, scored: Scored) -> None:
    day = scored.dates[1]
    df = spark.read.parquet(input_partition(scored, day))
    out = score_frame(
        df,
        scored.cfg.model.selector,
        tracking_uri=scored.cfg.model.tracking_uri,
        keep=["customer_id"],
    )
    assert out.columns == ["customer_id", "score", "error_class", "error_message", *LINEAGE]
    rows = out.collect()
    assert len(rows) == df.count()
    assert all(r.error_class is None for r in rows)
    got = {r.customer_id: r.score for r in rows}
    assert got == pytest.approx(scored.expected[day], abs=1e-12)


def test_unscorable_rows_are_flagged_not_dropped(
    spark: SparkSession, register: Callable[..., tuple[str, int]]
) -> None:
    """A model fit on numpy rejects NaN; a number written as text is cast, garbage is not."""
    train = labelled(400)
    model = LogisticRegression(max_iter=300).fit(
        train[builders.NUMERIC].to_numpy(np.float64), train["churned"]
    )
    name, _ = register(model, train[builders.NUMERIC])
    frame = customers(40)
    frame["tenure_months"] = frame["tenure_months"].astype(str)
    frame.loc[3, "tenure_months"] = "abc"
    frame.loc[7, "monthly_charges"] = np.nan
    clean = frame[builders.NUMERIC].replace("abc", "0").astype(np.float64).fillna(0.0)
    expected = model.predict_proba(clean.to_numpy())[:, 1]  # rows 3 and 7 are not compared

    arrow = score_frame(pa.Table.from_pandas(frame), f"models:/{name}@champion")
    spark_rows = score_frame(spark.createDataFrame(frame), f"models:/{name}@champion").collect()
    by_spark = {r.customer_id: r for r in spark_rows}
    assert arrow["tenure_months"].to_pylist() == frame["tenure_months"].tolist()  # as given
    for i, row in enumerate(arrow.to_pylist()):
        other = by_spark[row["customer_id"]]
        if i in (3, 7):
            assert row["score"] is None and other.score is None
            assert row["error_class"] == other.error_class
            assert row["error_class"] == ("CastError" if i == 3 else "ValueError")
        else:
            assert row["error_class"] is None
            assert row["score"] == pytest.approx(expected[i], abs=1e-12)
            assert other.score == pytest.approx(expected[i], abs=1e-12)


def test_multiclass_outputs(register: Callable[..., tuple[str, int]]) -> None:
    train = labelled(400)
    model, oracle = builders.multiclass(train)
    name, _ = register(model, train[builders.NUMERIC])
    frame = customers(50)
    out = score_frame(pa.Table.from_pandas(frame), f"models:/{name}@champion", keep=[])
    want = oracle(frame)
    assert out.column_names[:2] == ["probabilities", "predicted_label"]
    assert out["predicted_label"].to_pylist() == list(want["predicted_label"])
    for i, probabilities in enumerate(out["probabilities"].to_pylist()):
        for label, p in probabilities:
            assert p == pytest.approx(want[f"p_{label}"][i], abs=1e-12)


def test_score_frame_refuses_what_it_cannot_do(scored: Scored) -> None:
    table = pq.read_table(input_partition(scored, scored.dates[1]))
    uri, tracking = scored.cfg.model.selector, scored.cfg.model.tracking_uri
    with pytest.raises(MissingColumnsError, match=r"missing columns \['nope'\]"):
        score_frame(table, uri, tracking_uri=tracking, keep=["customer_id", "nope"])
    with pytest.raises(MissingColumnsError, match="usage_gb"):
        score_frame(table.drop_columns(["usage_gb"]), uri, tracking_uri=tracking)
    clash = table.append_column("score", table["usage_gb"])
    with pytest.raises(ConfigError, match=r"kept columns \['score'\]"):
        score_frame(clash, uri, tracking_uri=tracking)
    with pytest.raises(ConfigError, match="pyarrow Table, a pandas DataFrame or a Spark"):
        score_frame([1, 2, 3], uri, tracking_uri=tracking)  # type: ignore[arg-type]


def test_read_predictions_returns_the_committed_partition(scored: Scored, tmp_path: Path) -> None:
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(scored.cfg.model_dump(mode="json")))
    for day in scored.dates:
        table = read_predictions(scored.cfg, day)
        assert table.column_names == ["customer_id", "score", *LINEAGE, "ds"]
        assert table.schema.field("ds").type == pa.date32()
        assert set(table["ds"].to_pylist()) == {day}
        got = by_id(table["customer_id"].to_pylist(), table["score"].to_pylist())
        assert got == pytest.approx(scored.expected[day], abs=1e-12)
        from_file = read_predictions(str(config_file), day.isoformat(), columns=["customer_id"])
        assert from_file.column_names == ["customer_id", "ds"]
        assert sorted(from_file["customer_id"].to_pylist()) == sorted(scored.expected[day])


def test_read_predictions_of_an_uncommitted_date_names_the_committed_ones(
    scored: Scored,
) -> None:
    with pytest.raises(InputNotFoundError, match="committed dates") as err:
        read_predictions(scored.cfg, dt.date(2020, 1, 1))
    assert all(day.isoformat() in str(err.value) for day in scored.dates)
