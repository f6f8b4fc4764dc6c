"""``make demo``: sample warehouse + demo models in a local registry, then one scoring run.

Everything is placed where the job config says (input path, tracking URI), so the demo and
the nightly job read the same config. Reruns reuse existing data and models.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from batch_serving import sample_data
from batch_serving.config import JobConfig, load_config

if TYPE_CHECKING:
    from batch_serving.runs.job import RunResult
    from batch_serving.serving.publish import Published

log = logging.getLogger(__name__)

EXPERIMENT = "batch-serving-demo"
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


@dataclass(frozen=True)
class Demo:
    """What ``make demo`` did: the scoring run, the snapshot it published, and the lookup API's
    answer for one id."""

    result: RunResult
    published: Published
    lookup_path: str
    answer: dict[str, Any]

    def lines(self) -> list[str]:
        """The run's summary, the lookup it answered, how to do it yourself, the report."""
        from batch_serving.runs.summary import summary_lines

        path, name = self.lookup_path, self.published.model
        report = [f"run report: {self.result.report}"] if self.result.report is not None else []
        return [
            *summary_lines(self.result.manifest, self.result.after),
            "",
            f"published: {self.published.snapshot_id} ({self.published.rows} ids) -> "
            f"{self.published.path.parent.parent}",
            f"lookup API answered GET {path}:",
            f"  {json.dumps(self.answer)}",
            "serve it yourself:  make serve     (then, in another shell)",
            f"  curl -s http://127.0.0.1:8000{path}",
            f"  curl -s -X POST http://127.0.0.1:8000/v1/models/{name}/predictions:batchGet"
            " -H 'Content-Type: application/json' -d '{\"ids\": [1, 2, 99999999]}'",
            *report,
        ]


def run_demo(config_path: Path, run_date: dt.date, rows: int, days: int) -> list[str]:
    """``demo``'s summary lines."""
    return demo(config_path, run_date, rows, days).lines()


def demo(config_path: Path, run_date: dt.date, rows: int, days: int) -> Demo:
    """Prepare data and models if missing, score ``run_date``, publish it and look one id up."""
    from batch_serving.quality.gates import preload_gx_for
    from batch_serving.runs.job import run_score
    from batch_serving.spark.session import job_session

    cfg = load_config(config_path)
    dates = [run_date - dt.timedelta(days=d) for d in range(days - 1, -1, -1)]
    ensure_warehouse(cfg, dates, rows)
    ensure_models(cfg, train_rows=min(rows, 50_000))
    preload_gx_for(cfg)
    result = run_score(job_session(cfg, "demo", batch=True), cfg, run_date)
    return publish_and_query(cfg, run_date, result)


def publish_and_query(cfg: JobConfig, run_date: dt.date, result: RunResult) -> Demo:
    """Publish the scored date and answer one request over real HTTP."""
    import socket
    import urllib.request

    from batch_serving.api.app import create_app
    from batch_serving.api.server import running_server
    from batch_serving.config import ServeSettings
    from batch_serving.serving.publish import publish

    done = publish(cfg, run_date, allow_older=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = ServeSettings(snapshot_root=cfg.serving_root)
    path = f"/v1/models/{cfg.model.name}/predictions/42"
    with (
        running_server(create_app(settings), port) as url,
        urllib.request.urlopen(url + path, timeout=10) as response,
    ):
        body = json.loads(response.read())
    return Demo(result=result, published=done, lookup_path=path, answer=body)


def ensure_warehouse(cfg: JobConfig, dates: list[dt.date], rows: int) -> None:
    root = Path(cfg.input.root)  # the demo's job file names a path
    missing = [d for d in dates if not (root / f"{cfg.input.partition_column}={d}").is_dir()]
    if missing:
        log.info("writing %d sample partitions of %d rows to %s", len(missing), rows, root)
        sample_data.write_warehouse(root, missing, rows)
    else:
        log.info("sample warehouse %s already present", root)


def ensure_models(cfg: JobConfig, train_rows: int) -> None:
    """Register ``champion`` (HGB pipeline) and ``challenger`` (LogReg pipeline) once."""
    from mlflow import MlflowClient

    uri = cfg.model.tracking_uri
    _prepare_sqlite_dir(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=cfg.model.effective_registry_uri)
    try:
        aliases = client.get_registered_model(cfg.model.name).aliases or {}
    except Exception:
        aliases = {}
    if "champion" in aliases:
        log.info("model %s@champion already registered (v%s)", cfg.model.name, aliases["champion"])
        return
    frame = sample_data.customer_features(train_rows, seed=1234)
    for alias, estimator in (("champion", "hgb"), ("challenger", "logreg")):
        version = register_pipeline(uri, cfg.model.name, frame, estimator)
        client.set_registered_model_alias(cfg.model.name, alias, str(version))
        log.info("registered %s v%s as @%s", cfg.model.name, version, alias)


def pipeline(estimator: str) -> Any:
    """The demo's unfitted preprocessing+model pipeline: ``hgb`` or ``logreg``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cat = list(sample_data.CATEGORICAL)
    num = list(sample_data.NUMERIC)
    if estimator == "hgb":
        pre = ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), cat)], remainder="passthrough"
        )
        return Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=100))])
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), cat), ("num", StandardScaler(), num)]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])


def register_pipeline(tracking_uri: str, name: str, frame: object, estimator: str) -> int:
    """Fit a preprocessing+model pipeline on the sample frame and register it."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    assert isinstance(frame, pd.DataFrame)
    x = frame[list(sample_data.FEATURES)]
    y = frame["churned"]
    model = pipeline(estimator)
    model.fit(x, y)
    experiment_id = demo_experiment(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"demo-{estimator}"):
        mlflow.log_params({"estimator": estimator, "train_rows": len(frame)})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(100), model.predict_proba(x.head(100))),
            registered_model_name=name,
            skops_trusted_types=HGB_TRUSTED if estimator == "hgb" else None,
        )
        log_reference(x, model.predict_proba(x)[:, 1])
    return int(info.registered_model_version)


def demo_experiment(tracking_uri: str) -> str:
    """The demo models' experiment in ``tracking_uri`` (created on first use, its artifacts
    beside the registry), which becomes mlflow's tracking URI."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location(tracking_uri))
    )


def log_reference(features: object, scores: object) -> None:
    """The training data's drift profile, logged with the model (the runs' reference)."""
    import pyarrow as pa

    from batch_serving.monitoring.reference import log_training_reference, training_reference

    table = pa.Table.from_pandas(features, preserve_index=False)
    table = table.append_column("score", pa.array(scores, pa.float64()))
    log_training_reference(training_reference(table, "score"))


def artifact_location(tracking_uri: str) -> str:
    """Artifacts beside the SQLite DB (``<db dir>/artifacts``), never relative to cwd."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        return (Path(parsed.path).parent / "artifacts").resolve().as_uri()
    raise ValueError(f"demo registry must be sqlite:///..., got {tracking_uri}")


def _prepare_sqlite_dir(tracking_uri: str) -> None:
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        Path(parsed.path).parent.mkdir(parents=True, exist_ok=True)
