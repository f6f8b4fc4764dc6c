"""A cascade with a check sample as a Spark Connect client (no accumulators there): the
served rows equal a pandas evaluation of the stages, and the manifest's per-stage counts and
check agreement equal a pandas computation on the committed rows (the evidence travels in the
staged predictions, so it needs nothing Connect lacks)."""

from __future__ import annotations

import builders
import cloudpickle
import numpy as np
import pytest
from conftest import RUN_DATE, customers, labelled
from test_connect_job import connect_config, read

from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
pytestmark = pytest.mark.connect  # a process of its own (see conftest.CONNECT_APART)
SURE = "score <= 0.25 or score >= 0.75"
RULES = [{"when": "score >= 0.5", "action": "call"}, {"otherwise": "wait"}]


def test_cascade_counts_and_check_under_connect(
    remote,
    connect_url,
    register,
    warehouse,
    job_config,
) -> None:
    small, small_oracle = builders.logreg_pipeline(labelled(300, seed=5))
    big, big_oracle = builders.logreg_pipeline(labelled(800))
    sample = customers(50)[builders.FEATURES]
    small_name, _ = register(small, sample)
    big_name, _ = register(big, sample)
    rows = customers(600)
    warehouse(rows)
    cfg = connect_config(
        job_config,
        small_name,
        connect_url,
        members={"big": {"name": big_name, "alias": "champion"}},
        cascade={
            "stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}],
            "check_sample": 0.3,
        },
        rules=RULES,
    )
    result = run_score(remote, cfg, RUN_DATE)

    got = read(result.committed.path)
    ordered = rows.sort_values("customer_id").reset_index(drop=True)
    first = np.asarray(small_oracle(ordered)["score"])
    second = np.asarray(big_oracle(ordered)["score"])
    sure = (first <= 0.25) | (first >= 0.75)
    expected = np.where(sure, first, second)
    assert np.max(np.abs(got["score"].to_numpy() - expected)) <= 1e-12
    assert got["answered_by"].tolist() == ["champion" if s else "big" for s in sure]

    big_scores = got["big"].map(lambda s: s["score"]).to_numpy(dtype=float)
    checked = sure & ~np.isnan(big_scores)
    would = np.where(second[checked] >= 0.5, "call", "wait")
    flips = int((got["action"].to_numpy()[checked] != would).sum())
    champion, last = result.manifest.scoring.cascade
    assert (champion.seen, champion.answered, champion.checked) == (
        600,
        int(sure.sum()),
        int(checked.sum()),
    )
    assert (last.seen, last.answered) == (int((~sure).sum()), int((~sure).sum()))
    assert 0 < champion.checked < sure.sum()
    diff = np.abs(first[checked] - second[checked]).mean()
    assert champion.mean_abs_diff == pytest.approx(diff, abs=1e-12)
    assert (champion.flips, champion.decision) == (flips, "action")
