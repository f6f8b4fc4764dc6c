"""A cascade run's evidence for its band, on real Spark and a real registry, both engines: the
manifest's per-stage counts equal the rows each stage's model received (counted by the model
itself, in the Spark workers), the check sample's agreement equals a pandas computation on
the committed rows, and the summary, ``--json`` record, MLflow run and HTML report show them."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pyarrow as pa
import pytest
from conftest import RUN_DATE, customers
from mlflow import MlflowClient
from test_cascade_job import CountingScore, counting_stages, logistic, read

from batch_serving.cli.output import score_record
from batch_serving.runs.job import run_score
from batch_serving.runs.summary import summary_lines
from batch_serving.scoring.cascade import in_check_sample

cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules[CountingScore.__module__])
SURE = "prediction <= 0.3 or prediction >= 0.7"


@pytest.mark.parametrize("engine", ["arrow_direct", "dataframe"])
def test_stage_counts_and_check_agreement_in_every_record(
    spark, tmp_path, warehouse, job_config, register, tracking_uri, engine: str
) -> None:
    calls, small_name, big_name = counting_stages(tmp_path, register)
    rows = customers(500)
    warehouse(rows)
    cfg = job_config(
        small_name,
        engine=engine,
        members={"big": {"name": big_name, "alias": "champion"}},
        cascade={
            "stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}],
            "check_sample": 0.2,
        },
        tracking={"log_runs": True, "experiment": "cascade-{job}"},
        monitoring={"enabled": True},
    )
    result = run_score(spark, cfg, RUN_DATE)
    got = read(result.committed.path)

    def received(name: str) -> int:
        return sum(int(p.read_text()) for p in calls[name].iterdir())

    first = logistic(rows, 0.3)
    open_rows = int(((first > 0.3) & (first < 0.7)).sum())
    big = got["big"].map(lambda s: s["prediction"])
    checked = got[(got["answered_by"] == "champion") & big.notna()]
    assert 0 < open_rows < 500 and 10 < len(checked) < 0.4 * (500 - open_rows)
    # the checked rows are the hash-picked ones among champion's answers
    early = got[got["answered_by"] == "champion"]
    picked = in_check_sample([pa.array(early["customer_id"])], 0.2)
    assert set(early["customer_id"][picked]) == set(checked["customer_id"])

    champion, last = result.manifest.scoring.cascade
    assert (champion.member, champion.seen, champion.answered) == (
        "champion",
        received("small"),
        500 - open_rows,
    )
    assert (last.member, last.seen, last.answered, last.quarantined) == (
        "big",
        open_rows,
        open_rows,
        0,
    )
    assert received("big") == last.seen + champion.checked  # the open rows, then the check
    assert champion.checked == len(checked)
    assert champion.share_answered == pytest.approx((500 - open_rows) / 500)
    assert last.share_seen == pytest.approx(open_rows / 500)
    # agreement on the sample, computed with pandas from the committed rows
    diff = (checked["prediction"] - big[checked.index]).abs()
    flips = int(((checked["prediction"] >= 0.5) != (big[checked.index] >= 0.5)).sum())
    assert champion.mean_abs_diff == pytest.approx(diff.mean(), abs=1e-12)
    assert (champion.flips, champion.decision) == (flips, "label")
    assert champion.flip_share == pytest.approx(flips / len(checked))
    assert np.all(got.loc[checked.index, "prediction"] == first[checked.index])  # served: small

    lines = summary_lines(result.manifest, result.after)
    assert "  cascade   : 500 rows entered" in lines
    assert any(
        line.strip().startswith(f"check vs big on {len(checked)} of its answers") for line in lines
    )
    record = score_record(result)["manifest"]["scoring"]["cascade"]
    assert [(s["member"], s["seen"], s["checked"]) for s in record] == [
        ("champion", 500, len(checked)),
        ("big", open_rows, 0),
    ]
    metrics = MlflowClient(tracking_uri).get_run(result.after.mlflow_run_id).data.metrics
    assert metrics["cascade_big_seen"] == open_rows
    assert metrics["cascade_champion_checked"] == len(checked)
    assert metrics["cascade_champion_mean_abs_diff"] == pytest.approx(diff.mean())
    assert result.report is not None
    html = Path(result.report).read_text()
    assert '<h2 id="cascade">Cascade stages</h2>' in html
    assert f"{open_rows} ({100 * open_rows / 500:.1f}%)" in html
