"""A stream's cascade evidence without Spark: micro-batches scored by the core (quarantines and
the check sample included) are counted batch by batch (``batch_counts``), summed
(``CascadeTally``) and rendered in ``metrics.prom`` and the log; the sum equals the batch
run's ``stage_evidence`` over the same rows, and each batch's equals the core's own counts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pyarrow as pa
import pytest
from test_cascade_check import BIG_W, MEMBERS, RULES, chain
from test_cascade_core import Logistic, plan, rows

from batch_serving.scoring.batch import Scored, score_batch
from batch_serving.scoring.cascade_check import (
    batch_counts,
    check_columns,
    check_partials,
    evidence_of,
    merge_partials,
    stage_evidence,
)
from batch_serving.scoring.rules import parse_rules
from batch_serving.stream.metrics import (
    BatchStats,
    CascadeTally,
    StreamMetrics,
    evidence_record,
)


def _prom(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {key: float(value) for key, value in samples}


def test_batches_sum_to_the_batch_runs_evidence_in_prom_and_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    the_plan = plan(MEMBERS, chain(0.4), parse_rules(RULES))
    small, big = Logistic((-0.08, 0.6), 0.5, fails_above=6.5), Logistic(*BIG_W)
    batches: list[Scored] = [score_batch(the_plan, [small, big], rows(400, s)) for s in (21, 22)]
    quarantine = the_plan.quarantine_schema
    tally = CascadeTally(the_plan)
    metrics = StreamMetrics("churn", tmp_path / "metrics.prom", tally)
    caplog.set_level(logging.INFO, logger="batch_serving.stream.metrics")
    for batch_id, scored in enumerate(batches):
        good = pa.Table.from_batches([scored.predictions])
        bad = (
            quarantine.empty_table()
            if scored.quarantined is None
            else pa.Table.from_batches([scored.quarantined])
        )
        counts = batch_counts(the_plan, good, bad)
        got = evidence_of(the_plan, counts)
        # one batch's counts equal what the core counted while scoring it
        assert [(e.member, e.seen, e.answered, e.quarantined, e.checked) for e in got] == [
            (r.member, r.seen, r.answered, r.quarantined, r.checked) for r in scored.stages
        ]
        assert sum(e.answered for e in got) == good.num_rows
        assert got[0].band == got[1].seen  # champion's open rows are big's
        marker = evidence_record(got)
        assert marker[0]["band"] == got[1].seen
        assert marker[0]["agreement"] == pytest.approx(1 - got[0].flip_share)
        metrics.record_batch(
            BatchStats(batch_id, good.num_rows, bad.num_rows, 0, 0.1, cascade=counts)
        )

    tables = [pa.Table.from_batches([b.predictions]) for b in batches]
    expected = stage_evidence(
        the_plan,
        [t.column("answered_by") for t in tables],
        [b.quarantined.column("error_member") for b in batches if b.quarantined is not None],
        merge_partials(check_partials(the_plan, t.select(check_columns(the_plan))) for t in tables),
    )
    assert evidence_of(the_plan, tally.total) == expected
    champion, big_stage = expected
    assert big_stage.band == 0 and big_stage.answered + big_stage.quarantined == big_stage.seen
    assert champion.quarantined > 0 and champion.checked > 0 and champion.flips is not None

    prom = _prom((tmp_path / "metrics.prom").read_text())
    rows_total = 'batch_serving_stream_cascade_rows_total{{model="churn",stage="{}",outcome="{}"}}'
    for s in expected:
        for outcome in ("seen", "answered", "band", "quarantined"):
            assert prom[rows_total.format(s.member, outcome)] == getattr(s, outcome)
    check = 'batch_serving_stream_cascade_{}{{model="churn",stage="champion"}}'
    assert prom[check.format("check_rows_total")] == champion.checked
    assert prom[check.format("check_flips_total")] == champion.flips
    assert prom[check.format("check_agreement")] == pytest.approx(1 - champion.flip_share, 1e-5)
    assert prom[check.format("check_mean_abs_score_diff")] == pytest.approx(
        champion.mean_abs_diff, 1e-5
    )
    assert not any('stage="big"' in key for key in prom if "_check_" in key)

    messages = [r.getMessage() for r in caplog.records]
    cumulative = [m for m in messages if m.startswith("cascade since")]
    assert len(cumulative) == 2
    assert f"champion saw {champion.seen}, answered {champion.answered}" in cumulative[-1]
    assert re.search(
        rf"check champion vs big on {champion.checked}: action flips {champion.flips} ",
        cumulative[-1],
    )
    per_batch = [m for m in messages if re.match(r"batch \d cascade:", m)]
    assert len(per_batch) == 2


def test_a_stream_without_a_cascade_writes_no_cascade_series(tmp_path: Path) -> None:
    metrics = StreamMetrics("churn", tmp_path / "metrics.prom")
    metrics.record_batch(BatchStats(0, 10, 0, 0, 0.1))
    assert "cascade" not in (tmp_path / "metrics.prom").read_text()
