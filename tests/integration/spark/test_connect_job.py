"""The same jobs, unchanged, as Spark Connect clients (issue #26).

ONE local Spark Connect server per test session (``spark.connect.ConnectServer``: spark-submit
on loopback, its own process group, stopped at the end). Jobs reach it with ``spark.remote``;
every score must equal the model called in-process, as in test_job.py / test_multi_model.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, TEST_SPARK_CONF, customers, labelled
from test_drift_run import same_counts

from batch_serving.cli import main
from batch_serving.monitoring.profile import PROFILE_NAME, Profile, read_profile
from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
pytestmark = pytest.mark.connect  # a process of its own (see conftest.CONNECT_APART)


def connect_config(job_config: Any, name: str, url: str, **overrides: Any) -> Any:
    return job_config(name, spark={"remote": url, "conf": TEST_SPARK_CONF}, **overrides)


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("customer_id").reset_index(drop=True)


@pytest.mark.parametrize("strategy", ["auto", "per_partition"])
def test_single_model_equals_in_process_model(
    remote, connect_url, register, warehouse, job_config, strategy: str
) -> None:
    model, oracle = builders.hgb_on_numpy(labelled(800))
    rows = customers(700)
    name, _ = register(model, rows[builders.NUMERIC], trusted=builders.HGB_TRUSTED)
    warehouse(rows)
    cfg = connect_config(job_config, name, connect_url, loading={"strategy": strategy})

    result = run_score(remote, cfg, RUN_DATE)

    got = read(result.committed.path)
    expected = oracle(rows.sort_values("customer_id").reset_index(drop=True))
    assert len(got) == 700 == result.manifest.output.rows
    assert got["customer_id"].tolist() == sorted(rows["customer_id"])
    assert np.max(np.abs(got["score"].to_numpy() - expected["score"])) <= 1e-12
    assert result.manifest.scoring.engine == "dataframe"
    shipped = "artifact" if strategy == "auto" else "per_partition"
    assert result.manifest.scoring.delivery == shipped


def test_multi_model_members_equal_in_process_models(
    remote, connect_url, register, warehouse, job_config
) -> None:
    train = labelled(800)
    champion, oracle = builders.logreg_pipeline(train)
    challenger, challenger_oracle = builders.logreg_pipeline(labelled(800, seed=9))
    rows = customers(500)
    name, v1 = register(champion, rows[builders.FEATURES])
    _, v2 = register(challenger, rows[builders.FEATURES], name=name, alias="challenger")
    warehouse(rows)
    cfg = connect_config(
        job_config,
        name,
        connect_url,
        members={"challenger": {"name": name, "alias": "challenger", "role": "shadow"}},
    )

    result = run_score(remote, cfg, RUN_DATE)

    got = read(result.committed.path)
    ordered = rows.sort_values("customer_id").reset_index(drop=True)
    member = {k: pd.DataFrame(got[k].tolist()) for k in ("champion", "challenger")}
    assert np.max(np.abs(got["score"] - oracle(ordered)["score"])) <= 1e-12
    assert np.max(np.abs(member["champion"]["score"] - oracle(ordered)["score"])) <= 1e-12
    assert np.max(np.abs(member["challenger"]["score"] - challenger_oracle(ordered)["score"])) <= (
        1e-12
    )
    assert set(member["challenger"]["model_version"]) == {v2}
    assert set(got["model_version"]) == {v1}
    assert [m.delivery for m in result.manifest.members] == ["artifact", "artifact"]


class Cli:
    """``batch-serving score`` on a YAML whose ``spark.remote`` is the test server."""

    def __init__(self, tmp_path: Path, register: Any, warehouse: Any, job_config: Any, url: str):
        self.model, self.oracle = builders.logreg_pipeline(labelled(500))
        self.rows = customers(400)
        self.name, _ = register(self.model, self.rows[builders.FEATURES])
        self.tmp, self.warehouse, self.job_config, self.url = tmp_path, warehouse, job_config, url

    def run(self, frame: pd.DataFrame, capsys: Any, **overrides: Any) -> tuple[int, str]:
        self.warehouse(frame)
        cfg = connect_config(self.job_config, self.name, self.url, **overrides)
        path = self.tmp / "job.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
        captured = capsys.readouterr()
        return code, captured.err + captured.out

    def output(self, table: str) -> pd.DataFrame:
        root = Path(self.job_config(self.name).output.root)
        return read(root / table / self.name / f"ds={RUN_DATE}")


def test_quarantine_and_scores_through_the_cli(
    remote, connect_url, tmp_path, register, warehouse, job_config, capsys
) -> None:
    cli = Cli(tmp_path, register, warehouse, job_config, connect_url)
    bad = cli.rows.copy()
    bad.loc[bad["customer_id"].isin([3, 4]), "monthly_charges"] = np.nan

    code, out = cli.run(bad, capsys, validation={"max_bad_rows": "1%"})

    assert code == 0, out
    scored = cli.output("predictions")
    good = bad[~bad["customer_id"].isin([3, 4])].sort_values("customer_id")
    assert scored["customer_id"].tolist() == good["customer_id"].tolist()
    assert np.max(np.abs(scored["score"].to_numpy() - cli.oracle(good)["score"])) <= 1e-12
    quarantined = cli.output("quarantine")
    assert quarantined["customer_id"].tolist() == [3, 4]
    assert set(quarantined["error_class"]) == {"ValueError"}


def test_missing_column_is_named_without_a_grpc_stack(
    remote, connect_url, tmp_path, register, warehouse, job_config, capsys
) -> None:
    cli = Cli(tmp_path, register, warehouse, job_config, connect_url)

    code, out = cli.run(cli.rows.drop(columns=["contract"]), capsys)

    assert code == 4
    assert "missing columns ['contract']" in out
    for stack in ("JVM stacktrace", "grpc", "_InactiveRpcError", "Traceback", "at org.apache"):
        assert stack not in out


def test_drift_profile_is_counted_in_the_tasks_without_accumulators(
    remote, connect_url, register, warehouse, job_config
) -> None:
    """No accumulators under Connect: each task writes its counts to a file of its partition,
    the driver merges them; the profile equals the same rows profiled in-process."""
    champion, _ = builders.logreg_pipeline(labelled(800))
    name, _ = register(champion, customers(200)[builders.FEATURES])
    frame = customers(500, seed=11)
    frame.loc[frame["customer_id"].isin([7]), "monthly_charges"] = np.nan  # one quarantined
    warehouse(frame, files=3)
    cfg = connect_config(
        job_config,
        name,
        connect_url,
        monitoring={"enabled": True},
        validation={"max_bad_rows": "1%"},
    )

    result = run_score(remote, cfg, RUN_DATE)

    profile = read_profile(result.committed.path / PROFILE_NAME)
    assert profile is not None
    scored = frame[frame["customer_id"] != 7]
    features = pa.RecordBatch.from_pandas(frame[builders.FEATURES], preserve_index=False)
    scores = champion.predict_proba(scored[builders.FEATURES])[:, 1]
    expected = profile.spec.partial()  # features as read (500 rows), scores as written (499)
    expected.add(profile.spec, features, pa.RecordBatch.from_pydict({"score": scores}))
    same_counts(profile, Profile(profile.spec, expected.columns, {}))
    assert profile.counts["score"].rows == 499 == result.manifest.output.rows
    run_dir = Path(cfg.output.root) / "_runs" / "predictions" / name / result.manifest.run_id
    assert not (run_dir / "_task_counts").exists()  # merged, then removed
