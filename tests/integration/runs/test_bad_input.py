"""Bad input never corrupts a run: each case asserts the exit code, the message, what was
quarantined, and that the previously committed partition is byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import builders
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.runs.job import run_score

ENGINES = ["dataframe", "arrow_direct"]


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


class Setup:
    """A committed good partition for RUN_DATE, then helpers to rerun with bad input."""

    def __init__(self, spark, tmp_path, register, warehouse, job_config, model="logreg"):  # type: ignore[no-untyped-def]
        build = builders.logreg_pipeline if model == "logreg" else builders.hgb_on_numpy
        inputs = builders.FEATURES if model == "logreg" else builders.NUMERIC
        trusted = None if model == "logreg" else builders.HGB_TRUSTED
        self.model, self.oracle = build(labelled(500))
        self.rows = customers(400).astype({"tenure_months": "float64", "support_calls": "float64"})
        self.name, _ = register(self.model, self.rows[inputs], trusted=trusted)
        self.spark, self.tmp, self.warehouse, self.job_config = (
            spark,
            tmp_path,
            warehouse,
            job_config,
        )
        warehouse(self.rows)
        self.partition = run_score(spark, job_config(self.name), RUN_DATE).committed.path
        self.before = digest(self.partition)
        self.quarantine = (
            Path(job_config(self.name).output.root) / "quarantine" / self.name / f"ds={RUN_DATE}"
        )

    def cli(self, frame: pd.DataFrame | None, capsys, **overrides) -> tuple[int, str]:  # type: ignore[no-untyped-def]
        if frame is not None:
            self.warehouse(frame)
        cfg = self.job_config(self.name, **overrides)
        path = self.tmp / "job.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
        captured = capsys.readouterr()
        return code, captured.err + captured.out

    def unchanged(self) -> bool:
        return digest(self.partition) == self.before

    def quarantined(self) -> pd.DataFrame:
        table = pq.read_table(self.quarantine).to_pandas()
        if table.empty:  # a clean run may commit a quarantine partition with no data files
            return pd.DataFrame({"customer_id": []})
        return table.sort_values("customer_id")


@pytest.fixture
def setup(spark, tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    return Setup(spark, tmp_path, register, warehouse, job_config)


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_and_inf_rows_are_quarantined_strict_by_default(setup, capsys, engine) -> None:
    bad = setup.rows.copy()
    bad.loc[bad["customer_id"] == 5, "monthly_charges"] = np.nan
    bad.loc[bad["customer_id"] == 17, "usage_gb"] = np.inf
    bad.loc[bad["customer_id"] == 42, "usage_gb"] = -np.inf
    code, out = setup.cli(bad, capsys, engine=engine)
    assert code == 5
    assert "3 of 400 rows could not be scored (max_bad_rows 0)" in out
    assert "ValueError: 3" in out
    assert setup.unchanged()
    q = setup.quarantined()
    assert q["customer_id"].tolist() == [5, 17, 42]
    assert set(q["error_class"]) == {"ValueError"}
    assert q["error_message"].str.contains("NaN|infinity", regex=True).all()
    assert set(q["model_version"]) == {1} and q["run_id"].nunique() == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_rows_within_threshold_commit_the_rest(setup, capsys, engine) -> None:
    bad = setup.rows.copy()
    bad.loc[bad["customer_id"].isin([3, 4]), "tenure_months"] = np.nan
    code, out = setup.cli(bad, capsys, engine=engine, validation={"max_bad_rows": "1%"})
    assert code == 0, out
    scored = pq.read_table(setup.partition).to_pandas()
    assert len(scored) == 398 and not scored["customer_id"].isin([3, 4]).any()
    good = bad[~bad["customer_id"].isin([3, 4])].sort_values("customer_id")
    expected = setup.oracle(good)["score"]
    got = scored.sort_values("customer_id")["score"].to_numpy()
    assert np.max(np.abs(got - expected)) <= 1e-12
    assert setup.quarantined()["customer_id"].tolist() == [3, 4]


def test_null_features_are_quarantined(setup, capsys) -> None:
    bad = setup.rows.copy()
    bad["contract"] = bad["contract"].astype(object)
    bad.loc[bad["customer_id"] == 9, "contract"] = None
    bad.loc[bad["customer_id"] == 10, "monthly_charges"] = None
    code, out = setup.cli(bad, capsys, validation={"max_bad_rows": 5})
    # the one-hot encoder ignores unknown categories, so a null category still scores;
    # a null numeric feature cannot be scored by LogisticRegression
    assert code == 0, out
    assert setup.quarantined()["customer_id"].tolist() == [10]


def test_hgb_scores_nan_natively(spark, tmp_path, register, warehouse, job_config, capsys) -> None:
    s = Setup(spark, tmp_path, register, warehouse, job_config, model="hgb")
    bad = s.rows.copy()
    bad.loc[bad["customer_id"] == 7, "monthly_charges"] = np.nan
    code, out = s.cli(bad, capsys)
    assert code == 0, out
    assert len(pq.read_table(s.partition)) == 400
    assert len(s.quarantined()) == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_string_column_castable_values_cast_others_quarantined(setup, capsys, engine) -> None:
    bad = setup.rows.copy()
    bad["usage_gb"] = bad["usage_gb"].map(lambda v: f"{v:.17g}")
    bad.loc[bad["customer_id"] == 11, "usage_gb"] = "twelve"
    code, out = setup.cli(bad, capsys, engine=engine, validation={"max_bad_rows": 1})
    assert code == 0, out
    q = setup.quarantined()
    assert q["customer_id"].tolist() == [11]
    assert q["error_class"].tolist() == ["CastError"]
    assert "usage_gb" in q["error_message"].iloc[0] and "twelve" in q["error_message"].iloc[0]
    scored = pq.read_table(setup.partition).to_pandas().sort_values("customer_id")
    good = setup.rows[setup.rows["customer_id"] != 11].sort_values("customer_id")
    assert np.max(np.abs(scored["score"].to_numpy() - setup.oracle(good)["score"])) <= 1e-12


def test_column_of_incompatible_type_fails_naming_it(setup, capsys) -> None:
    bad = setup.rows.copy()
    bad["usage_gb"] = pd.to_datetime("2026-01-01") + pd.to_timedelta(bad["customer_id"], "s")
    code, out = setup.cli(bad, capsys)
    assert code == 4
    assert "column 'usage_gb'" in out and "timestamp" in out and "expects double" in out
    assert setup.unchanged()


def test_missing_column(setup, capsys) -> None:
    code, out = setup.cli(setup.rows.drop(columns=["contract"]), capsys)
    assert code == 4
    assert "missing columns ['contract']" in out
    assert setup.unchanged()


def test_extra_columns_are_ignored_and_logged(setup, capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger="batch_serving")
    code, out = setup.cli(setup.rows.assign(note="x", region=1), capsys)
    assert code == 0, out
    assert "ignoring 2 input columns not used by the model: ['note', 'region']" in caplog.text
    assert "note" not in pq.read_table(setup.partition).column_names


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_partition_fails_unless_allowed(setup, capsys, engine) -> None:
    part = Path(setup.job_config(setup.name).input.path) / f"ds={RUN_DATE}"
    schema = pa.Table.from_pandas(setup.rows, preserve_index=False).schema
    for f in part.glob("*.parquet"):
        pq.write_table(schema.empty_table(), f)  # same files and schema, zero rows
    code, out = setup.cli(None, capsys, engine=engine)
    assert code == 4
    assert "input partition" in out and "is empty" in out and "allow_empty" in out
    assert setup.unchanged()
    code, out = setup.cli(None, capsys, engine=engine, validation={"allow_empty": True})
    assert code == 0, out
    assert pq.read_table(setup.partition).num_rows == 0
    assert (setup.partition / "_manifest.json").is_file()


def test_duplicate_entity_ids(setup, capsys) -> None:
    dup = pd.concat([setup.rows, setup.rows[setup.rows["customer_id"].isin([1, 2])]])
    code, out = setup.cli(dup, capsys)
    assert code == 4
    assert "2 duplicate values of ['customer_id']" in out and "duplicate_ids" in out
    assert setup.unchanged()
    code, out = setup.cli(None, capsys, validation={"duplicate_ids": "allow"})
    assert code == 0 and pq.read_table(setup.partition).num_rows == 402
    code, out = setup.cli(None, capsys, validation={"duplicate_ids": "keep_last"})
    assert code == 0 and pq.read_table(setup.partition).num_rows == 400


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_ids_fail_the_run_with_either_engine(setup, capsys, engine) -> None:
    """arrow_direct checks the scan after its scoring tasks (it ran beside them); the
    dataframe engine before scoring. Either way: exit 4, the ids named, nothing committed."""
    dup = pd.concat([setup.rows, setup.rows[setup.rows["customer_id"].isin([3])]])
    code, out = setup.cli(dup, capsys, engine=engine)
    assert code == 4
    assert "1 duplicate values of ['customer_id'] (e.g. [3])" in out
    assert setup.unchanged()


@pytest.mark.parametrize("engine", ENGINES)
def test_corrupt_parquet_file_is_named(setup, capsys, engine) -> None:
    part_dir = Path(setup.job_config(setup.name).input.path) / f"ds={RUN_DATE}"
    victim = sorted(part_dir.glob("*.parquet"))[0]
    victim.write_bytes(b"PAR1 this is not parquet PAR1")
    code, out = setup.cli(None, capsys, engine=engine)
    assert code == 7
    assert victim.name in out
    assert setup.unchanged()


def test_missing_date_partition(setup, capsys) -> None:
    cfg = setup.job_config(setup.name)
    path = setup.tmp / "job.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    code = main(["score", "--config", str(path), "--run-date", "2026-11-23"])
    assert code == 4
    assert "ds=2026-11-23 for 2026-11-23 does not exist" in capsys.readouterr().err
    assert setup.unchanged()
