"""End-to-end scoring runs on real Spark + a real SQLite MLflow registry.

The oracle is the model called in-process on the same rows: Spark's scores must match it to
1e-12, for every model kind and both delivery strategies.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from conftest import RUN_DATE, customers, labelled

from batch_serving.errors import ScoringError, StorageError
from batch_serving.runs.job import run_score
from batch_serving.tables import commit
from batch_serving.tables.layout import TableLayout

# Test-local classes must travel to workers by value (they are not installed on workers).
cloudpickle.register_pickle_by_value(builders)

PYFUNC_INPUTS = ["tenure_months", "support_calls"]
# case -> (builder, skops trusted types, is a custom pyfunc, the model's input columns)
CASES = {
    "hgb_numpy": (builders.hgb_on_numpy, builders.HGB_TRUSTED, False, builders.NUMERIC),
    "logreg_pipeline": (builders.logreg_pipeline, None, False, builders.FEATURES),
    "forest_regressor": (builders.forest_regressor, builders.TREE_TRUSTED, False, builders.NUMERIC),
    "multiclass": (builders.multiclass, None, False, builders.NUMERIC),
    "custom_pyfunc": (builders.custom_pyfunc, None, True, PYFUNC_INPUTS),
}


def read_partition(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("customer_id").reset_index(drop=True)


def tree_digest(path: Path) -> dict[str, str]:
    """Byte-level fingerprint of every file below ``path``."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("strategy", "engine"),
    [("broadcast", "dataframe"), ("per_partition", "dataframe"), ("per_partition", "arrow_direct")],
)
@pytest.mark.parametrize("case", list(CASES))
def test_scores_equal_in_process_model(
    spark, register, warehouse, job_config, case: str, strategy: str, engine: str
) -> None:
    build, trusted, is_pyfunc, inputs = CASES[case]
    model, oracle = build(labelled(800))
    rows = customers(700)
    name, version = register(model, rows[inputs], trusted=trusted, pyfunc=is_pyfunc)
    warehouse(rows)

    cfg = job_config(name, loading={"strategy": strategy}, engine=engine)
    result = run_score(spark, cfg, RUN_DATE)

    got = read_partition(result.committed.path)
    expected = oracle(rows.sort_values("customer_id").reset_index(drop=True))
    assert len(got) == len(rows) == result.manifest.output.rows
    assert got["customer_id"].tolist() == sorted(rows["customer_id"])
    for column, values in expected.items():
        if column.startswith("p_"):
            actual = got["probabilities"].map(lambda kv, c=column[2:]: dict(kv)[c])
            assert np.max(np.abs(actual.to_numpy(np.float64) - values)) <= 1e-12
        elif column == "predicted_label":
            assert got[column].tolist() == list(values)
        else:
            assert np.max(np.abs(got[column].to_numpy(np.float64) - values)) <= 1e-12
    assert set(got["model_name"]) == {name}
    assert set(got["model_version"]) == {version}
    scoring = result.manifest.scoring
    assert (scoring.delivery, scoring.engine) == (strategy, engine)
    # one load per Python worker per job (cold cache: a fresh model name per test)
    assert scoring.model_loads == scoring.python_workers >= 1


def test_positive_class_is_looked_up_by_label_not_position(
    spark, register, warehouse, job_config
) -> None:
    train = labelled(800)
    train["churned"] = np.where(train["churned"] == 1, "churn", "stay")
    model, _ = builders.logreg_pipeline(train)
    assert list(model.classes_) == ["churn", "stay"]  # the positive class is column 0
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)

    cfg = job_config(name, model={"positive_label": "churn"})
    got = read_partition(run_score(spark, cfg, RUN_DATE).committed.path)

    ordered = rows.sort_values("customer_id")[builders.FEATURES]
    proba = model.predict_proba(ordered)
    assert np.max(np.abs(got["score"].to_numpy() - proba[:, 0])) <= 1e-12
    assert np.max(np.abs(got["score"].to_numpy() - proba[:, 1])) > 0.1


def test_rerun_replaces_only_that_date(spark, register, warehouse, job_config) -> None:
    model, _ = builders.logreg_pipeline(labelled(500))
    first_rows = customers(400, seed=1)
    name, _ = register(model, first_rows[builders.FEATURES])
    other_date = RUN_DATE.replace(day=21)
    warehouse(customers(250, seed=2), other_date)
    warehouse(first_rows)
    cfg = job_config(name)
    other = run_score(spark, cfg, other_date).committed.path
    other_before = tree_digest(other)

    first = run_score(spark, cfg, RUN_DATE)
    first_rows_written = read_partition(first.committed.path)  # before the rerun replaces it
    second = run_score(spark, cfg, RUN_DATE)

    assert first.committed.path == second.committed.path
    assert first.manifest.run_id != second.manifest.run_id
    table = spark.read.parquet(str(first.committed.path.parent))
    assert table.filter(f"ds = '{RUN_DATE}'").count() == 400  # no duplicates
    assert table.filter(f"ds = '{other_date}'").count() == 250
    assert tree_digest(other) == other_before
    drop = ["scored_at"]
    assert_df_equality(
        spark.read.parquet(str(second.committed.path)).drop(*drop),
        spark.createDataFrame(first_rows_written.drop(columns=["ds"], errors="ignore")).drop(*drop),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert not any(
        TableLayout(Path(cfg.output.root), "predictions", name)
        .root.joinpath("_staging")
        .rglob("*.parquet")
    )


def test_failure_mid_write_keeps_previous_partition(spark, register, warehouse, job_config) -> None:
    rows = customers(600)
    good, _ = builders.custom_pyfunc(labelled(10))
    name, _ = register(good, rows[PYFUNC_INPUTS], pyfunc=True)
    warehouse(rows, files=4)
    cfg = job_config(name)
    committed = run_score(spark, cfg, RUN_DATE).committed.path
    before = tree_digest(committed)

    register(
        builders.FailsOnSomeRows(), rows[["customer_id", *PYFUNC_INPUTS]], name=name, pyfunc=True
    )
    with pytest.raises(ScoringError, match="injected failure while scoring"):
        run_score(spark, cfg, RUN_DATE)

    assert tree_digest(committed) == before
    assert read_partition(committed)["model_version"].eq(1).all()


class ProcessDied(BaseException):
    """Stands in for SIGKILL: nothing after the raise point runs (no except/rollback)."""


@pytest.mark.parametrize("fault", ["error", "death"])
def test_interrupted_commit_keeps_previous_partition(
    spark, register, warehouse, job_config, monkeypatch, fault: str
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name)
    committed = run_score(spark, cfg, RUN_DATE).committed.path
    before = tree_digest(committed)

    real_rename = commit._rename

    def crash_on_second_rename(src: Path, dst: Path) -> None:
        if dst == committed:  # old partition already moved to trash, new one not yet in place
            raise OSError("injected crash between renames") if fault == "error" else ProcessDied()
        real_rename(src, dst)

    monkeypatch.setattr(commit, "_rename", crash_on_second_rename)
    expected = StorageError if fault == "error" else ProcessDied
    with pytest.raises(expected):
        run_score(spark, cfg, RUN_DATE)
    monkeypatch.setattr(commit, "_rename", real_rename)

    layout = TableLayout(Path(cfg.output.root), "predictions", name)
    if fault == "death":
        assert not committed.exists()  # the crash window; the old data waits in _trash
        commit.recover(layout, RUN_DATE)  # what the next run does first
    assert tree_digest(committed) == before
    assert layout.trash_entries(RUN_DATE) == []
    rerun = run_score(spark, cfg, RUN_DATE)
    assert rerun.committed.rows == 200
