"""``batch-serving training-set`` without Spark: the rows equal a brute-force recomputation, the
inputs are checked (file and column named), the output is replaced only on success, and
``--check`` against stream rows (written here as the stream writes them) names the first
event whose features differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from windows_oracle import WINDOWS, brute_force, history, spec

from batch_serving.cli import main
from batch_serving.features.offline import feature_mismatches

MODEL = "fraud"


def job_file(tmp_path: Path, windows: dict[str, Any] | None = WINDOWS) -> Path:
    data: dict[str, Any] = {
        "job": "fraud_stream",
        "model": {"name": MODEL, "alias": "champion", "tracking_uri": f"sqlite:///{tmp_path}/m.db"},
        "input": {"path": str(tmp_path / "warehouse")},
        "entity_columns": ["event_id", "card_id"],
        "output": {"root": str(tmp_path / "out")},
    }
    if windows is not None:
        data["windows"] = windows
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def events(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    frame = history(n=120, seed=5, minutes=90)
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    return frame, path


def run(*argv: str | Path) -> int:
    return main(["training-set", *map(str, argv)])


def test_every_event_gets_its_point_in_time_features(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame, path = events
    out = tmp_path / "sets" / "train.parquet"
    assert run("--config", job_file(tmp_path), "--events", path, "--output", out) == 0
    written = pq.read_table(out).to_pandas()
    assert len(written) == len(frame) == 120
    want = brute_force(frame, frame, spec())
    assert feature_mismatches(written, want, spec(), ["event_id"]).empty
    assert written["amount_count_1h"].max() > 3  # windows hold several events
    text = capsys.readouterr().out
    assert "training set of 120 rows, 4 entities (card_id)" in text
    assert "2026-11-22T08:" in text and str(out) in text and "amount_sum_10m" in text
    assert [p.name for p in out.parent.iterdir()] == ["train.parquet"]  # no temp file left


def test_labels_are_the_rows_and_json_summarises(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame, path = events
    labels = frame.sample(30, random_state=1)[["event_id", "card_id", "ts"]].assign(
        is_fraud=np.arange(30) % 2, note="x"
    )
    labels_path = tmp_path / "labels.csv"
    labels.assign(ts=labels["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_csv(labels_path, index=False)
    out = tmp_path / "train.parquet"
    argv = ["--config", job_file(tmp_path), "--events", path, "--labels", labels_path]
    code = run(*argv, "--label-column", "is_fraud", "--label-column", "event_id", "--output", out)
    assert code == 0
    written = pq.read_table(out).to_pandas()
    assert list(written.columns[:4]) == ["card_id", "ts", "is_fraud", "event_id"]
    assert "note" not in written.columns
    assert written["is_fraud"].tolist() == labels["is_fraud"].tolist()  # the labels' order
    want = brute_force(frame, labels.reset_index(drop=True), spec())
    assert feature_mismatches(written, want, spec(), ["event_id"]).empty
    capsys.readouterr()
    assert run(*argv, "--output", out, "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["rows"] == 30 and record["history_events"] == 120
    assert record["features"] == list(spec().names) and record["check"] is None
    assert record["entities"] == labels["card_id"].nunique()
    assert record["time_range"]["first"].startswith("2026-11-22T08:")


def test_json_lines_directory_gives_the_same_set(
    tmp_path: Path, events: tuple[pd.DataFrame, Path]
) -> None:
    frame, parquet = events
    folder = tmp_path / "landing"
    folder.mkdir()
    for i, part in enumerate(np.array_split(frame, 3)):
        lines = part.assign(ts=part["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        lines.to_json(folder / f"part-{i}.json", orient="records", lines=True)
    (folder / "_SUCCESS").write_text("")
    job = job_file(tmp_path)
    assert run("--config", job, "--events", folder, "--output", tmp_path / "a.parquet") == 0
    assert run("--config", job, "--events", parquet, "--output", tmp_path / "b.parquet") == 0
    a = pq.read_table(tmp_path / "a.parquet").to_pandas()
    b = pq.read_table(tmp_path / "b.parquet").to_pandas()
    assert len(a) == len(b) == 120
    assert feature_mismatches(a, b, spec(), ["event_id"]).empty


def test_missing_column_names_it_and_the_file_and_keeps_the_old_output(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame, _ = events
    bad = tmp_path / "no_merchant.parquet"
    frame.drop(columns=["merchant"]).to_parquet(bad, index=False)
    out = tmp_path / "train.parquet"
    out.write_bytes(b"previous")
    assert run("--config", job_file(tmp_path), "--events", bad, "--output", out) == 4
    err = capsys.readouterr().err
    assert "missing columns ['merchant']" in err and str(bad) in err
    assert out.read_bytes() == b"previous"


def test_job_without_windows_is_exit_2_naming_the_key(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = events
    job = job_file(tmp_path, windows=None)
    assert run("--config", job, "--events", path, "--output", tmp_path / "t.parquet") == 2
    assert "no `windows:` section" in capsys.readouterr().err
    assert not (tmp_path / "t.parquet").exists()


def land_stream_rows(root: Path, rows: pd.DataFrame, batch: int = 0) -> None:
    """Rows where the stream commits them: a batch file and its marker."""
    folder = root / "stream_predictions" / MODEL / "ds=2026-11-22"
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / f"batch-{batch:012d}.parquet", index=False)
    markers = root / "_stream" / MODEL / "batches"
    markers.mkdir(parents=True, exist_ok=True)
    (markers / f"{batch:012d}.json").write_text("{}")


def test_check_passes_on_equal_rows_and_names_the_first_tampered_one(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame, path = events
    late = frame.sample(5, random_state=3)  # in the history, never scored by the stream
    scored_events = frame.drop(late.index)
    served = brute_force(scored_events, scored_events, spec()).assign(score=0.5)
    land_stream_rows(tmp_path / "out", served.drop(columns=["ts"]))
    job, out = job_file(tmp_path), tmp_path / "train.parquet"
    assert run("--config", job, "--events", path, "--output", out, "--check", "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["check"] == {"rows": 115, "keys": ["event_id", "card_id"]}
    assert record["history_events"] == 115 and record["left_out_events"] == 5
    assert sorted(pq.read_table(out).to_pandas()["event_id"]) == sorted(served["event_id"])

    busy = served[served["amount_count_1h"] > 0].sort_values("event_id").iloc[0]
    tampered = served.copy()
    tampered.loc[tampered["event_id"] == busy["event_id"], "amount_sum_1h"] += 0.25
    land_stream_rows(tmp_path / "out", tampered.drop(columns=["ts"]))
    out.unlink()
    assert run("--config", job, "--events", path, "--output", out, "--check") == 12
    err = capsys.readouterr().err
    want = f"{busy['amount_sum_1h'] + 0.25} in the stream, {busy['amount_sum_1h']} offline"
    assert f"'event_id': {busy['event_id']}" in err and "amount_sum_1h is" in err
    assert want in err and "1 of 115 scored events differ" in err
    assert not out.exists()  # nothing written


def test_check_without_feature_columns_in_the_stream_output_names_them(
    tmp_path: Path, events: tuple[pd.DataFrame, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame, path = events
    land_stream_rows(tmp_path / "out", frame[["event_id", "card_id"]].assign(score=0.5))
    args = ["--events", path, "--output", tmp_path / "t.parquet", "--check"]
    assert run("--config", job_file(tmp_path), *args) == 4
    err = capsys.readouterr().err
    assert "missing columns ['amount_count_10m'" in err
    assert "stream_predictions" in err
