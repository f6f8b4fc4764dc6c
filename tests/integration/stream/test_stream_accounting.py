"""Every landed row of a stream is accounted for: scored, quarantined with a reason naming the
column, or in a poison report (issue #31, items 2 and 3), and readers can tell committed
batches from a batch cut short by a crash (item 9).

Real Structured Streaming over real landing files, scored against the in-process oracle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import customers, labelled
from pyspark.sql import SparkSession
from test_stream import land, read_table, stream_job

from batch_serving.config import JobConfig
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream


@pytest.fixture
def logreg(register: Callable[..., tuple[str, int]]) -> tuple[str, Any]:
    model, oracle = builders.logreg_pipeline(labelled(800))
    name, _ = register(model, customers(50)[builders.FEATURES])
    return name, oracle


def events(rows: int, seed: int) -> pd.DataFrame:
    return customers(rows, seed=seed).assign(customer_id=lambda f: f.customer_id + 1000 * seed)


def test_files_of_wrong_types_or_missing_columns_are_quarantined_naming_the_column(
    spark: SparkSession, job_config: Callable[..., JobConfig], tmp_path: Path, logreg: Any
) -> None:
    """One micro-batch of six files: a good one; a numeric feature landed as strings (values
    that parse are scored, the others quarantined by the batch's casts); a file without a
    feature (the batch job's MissingColumnsError); a feature of a type no cast reaches
    (ColumnTypeError); ids written as int32 (widened to the declared BIGINT); an unreadable
    file (poison). scored + quarantined == landed, each id once."""
    name, oracle = logreg
    cfg = stream_job(job_config, name, tmp_path, max_files_per_trigger=10)
    landing = tmp_path / "landing"
    good, strings, missing, timestamps, narrow = (events(12, s) for s in (1, 2, 3, 4, 5))
    as_text = strings.assign(monthly_charges=strings.monthly_charges.map(repr))
    as_text.loc[[2, 7], "monthly_charges"] = ["abc", "12,5"]
    land(landing, "good.parquet", good)
    land(landing, "strings.parquet", as_text)
    land(landing, "missing.parquet", missing.drop(columns=["usage_gb"]))
    land(
        landing,
        "timestamps.parquet",
        timestamps.assign(tenure_months=pd.Timestamp("2026-01-01")).astype(
            {"tenure_months": "datetime64[us]"}
        ),
    )
    land(landing, "narrow.parquet", narrow.astype({"customer_id": "int32"}))
    (landing / "junk.parquet").write_bytes(b"PAR1 not a footer" * 8)

    result = run_stream(spark, cfg, available_now=True)

    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir)
    bad = read_table(layout.quarantine.table_dir)
    landed = pd.concat([good, strings, missing, timestamps, narrow], ignore_index=True)
    assert len(got) + len(bad) == len(landed) == 60
    assert sorted([*got.customer_id, *bad.customer_id]) == sorted(landed.customer_id)
    assert result.scored_rows == len(got) == 12 + 10 + 12
    assert result.quarantined_rows == len(bad) == 2 + 12 + 12
    assert (
        str(
            pq.read_schema(next(layout.predictions.table_dir.rglob("*.parquet")))
            .field("customer_id")
            .type
        )
        == "int64"
    )

    scorable = pd.concat([good, strings.drop(index=[2, 7]), narrow], ignore_index=True)
    expected = dict(zip(scorable.customer_id, oracle(scorable)["score"], strict=True))
    assert np.allclose(got.score, got.customer_id.map(expected), rtol=0, atol=1e-9)

    why = bad.set_index("customer_id")
    for cid, text in ((strings.customer_id[2], "abc"), (strings.customer_id[7], "12,5")):
        assert why.error_message[cid] == (
            f"cannot cast column 'monthly_charges' value '{text}' to double"
        )
    lost = why.loc[missing.customer_id]
    assert set(lost.error_class) == {"MissingColumnsError"}
    assert lost.error_message.str.startswith(
        "missing columns ['usage_gb'] in missing.parquet"
    ).all()
    typed = why.loc[timestamps.customer_id]
    assert set(typed.error_class) == {"ColumnTypeError"}
    message = typed.error_message.iloc[0]
    assert "'tenure_months'" in message and "timestamp" in message and "long" in message

    assert result.poison_files == 1
    reports = [json.loads(p.read_text()) for p in (layout.state_dir / "poison").glob("*.json")]
    assert [r["file"].rsplit("/", 1)[-1] for r in reports] == ["junk.parquet"]
    marker = json.loads(layout.marker(0).read_text())
    assert (marker["scored_rows"], marker["quarantined_rows"]) == (34, 26)
    prom = layout.metrics_file.read_text()
    assert f'batch_serving_stream_rows_total{{model="{name}",outcome="quarantined"}} 26' in prom


@pytest.mark.slow
def test_batch_cut_short_by_kill9_is_not_committed_until_replayed(
    spark: SparkSession,
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
    logreg: Any,
) -> None:
    """kill -9 of the stream's process group after a batch's files are in place, before its
    marker: the files are there, ``committed_files`` (the readers' filter) lists none of
    them; the restart replays the batch and then lists every row once."""
    import os
    import subprocess
    import sys

    import yaml

    name, _ = logreg
    cfg = stream_job(job_config, name, tmp_path, max_files_per_trigger=10)
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    frames = [events(15, s) for s in (1, 2)]
    for i, frame in enumerate(frames):
        land(tmp_path / "landing", f"events-{i}.parquet", frame)
    crash = (
        "import os, signal, sys\n"
        "from batch_serving.stream import sink\n"
        "def die(self, batch_id, record):\n"
        "    os.killpg(os.getpgid(0), signal.SIGKILL)\n"
        "sink.FileSink.commit = die\n"
        "from batch_serving.cli import main\n"
        "sys.exit(main(['stream', '--config', sys.argv[1], '--available-now']))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", crash, str(config)],
        env=env,
        capture_output=True,
        start_new_session=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]

    layout = StreamLayout.for_job(cfg)
    landed = sorted(layout.predictions.table_dir.rglob("batch-*.parquet"))
    assert landed and not layout.marker(0).exists()  # files in place, batch not committed
    assert layout.committed_files(layout.predictions) == []

    assert run_stream(spark, cfg, available_now=True).scored_rows == 30
    files = layout.committed_files(layout.predictions)
    rows = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    assert len(rows) == 30 and rows.customer_id.is_unique
    assert set(rows.batch_id) == {0} and layout.committed_batches() == [0]
