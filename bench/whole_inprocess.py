"""The comparison point of ``score_bench.py --only whole``: the demo job's scoring work written
as one plain Python script, run as its own process (imports included), the way a user would
write it without batch-serving.

    python bench/whole_inprocess.py --config <job.yaml> --run-date 2026-01-10 --out <dir>

It does what the demo job's scoring does: pin ``champion`` and ``challenger`` in the registry,
load both, read the input partition with pyarrow, score both models, apply the job's rules to
the champion's score, and write id + score + action + challenger score as Parquet. What it
does not do is what batch-serving adds around that (gates, drift, manifests, the lease, the
SQL catalog, the MLflow record): the whole-job ratio is the price of those guarantees.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

START = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-date", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import mlflow.sklearn
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml
    from mlflow import MlflowClient

    job = yaml.safe_load(Path(args.config).read_text())
    project = Path(args.config).resolve().parents[2]  # <project>/conf/jobs/<job>.yaml
    tracking_uri = job["model"]["tracking_uri"].replace("sqlite:///", f"sqlite:///{project}/", 1)
    name = job["model"]["name"]
    client = MlflowClient(tracking_uri)
    models = {}
    for alias in ("champion", "challenger"):  # pinned once, like the job's resolve step
        version = client.get_model_version_by_alias(name, alias).version
        mlflow.set_tracking_uri(tracking_uri)
        models[alias] = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    partition = project / job["input"]["path"] / f"ds={args.run_date}"
    table = pq.read_table(sorted(str(p) for p in partition.glob("*.parquet")))
    frame = table.to_pandas()
    features = list(models["champion"].feature_names_in_)
    score = models["champion"].predict_proba(frame[features])[:, 1]
    challenger = models["challenger"].predict_proba(frame[features])[:, 1]
    action = np.select(
        [score >= 0.7, score >= 0.4], ["retention_call", "discount_offer"], "no_action"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scored = pa.table(
        {
            "customer_id": table.column("customer_id"),
            "score": score,
            "action": action,
            "challenger_score": challenger,
        }
    )
    pq.write_table(scored, out / "part-00000.parquet")
    print(f"in-process: {len(score)} rows in {time.perf_counter() - START:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
