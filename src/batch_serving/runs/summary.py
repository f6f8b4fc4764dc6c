"""Human-readable run summaries, built from the manifest and the run's after-commit record
(so logs and files agree)."""

from __future__ import annotations

from batch_serving.tables.manifest import AfterCommit, RunManifest


def summary_lines(manifest: RunManifest, after: AfterCommit | None = None) -> list[str]:
    model, scoring, out = manifest.model, manifest.scoring, manifest.output
    pointer = f"@{model.alias}" if model.alias else f"/{model.version}"
    timings = after.durations_s if after is not None and after.durations_s else manifest.durations_s
    durations = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    table_root = out.path.rsplit("/", 1)[0]
    columns = scoring.output_columns
    recorded = []
    if after is not None and after.skipped:
        recorded.append(f"  after     : skipped ({after.skipped})")
    if after is not None and after.tables:
        recorded.append(f'  tables    : {", ".join(after.tables)} (batch-serving sql "...")')
    if after is not None and after.tracking_enabled:
        run = after.mlflow_run_id or "not logged (tracking server unavailable, see log)"
        recorded.append(f"  mlflow    : run {run}")
    return [
        f"batch-serving: job {manifest.job} scored {manifest.run_date} (run {manifest.run_id})",
        f"  model     : {model.name} v{model.version} (models:/{model.name}{pointer}, "
        f"mlflow run {model.run_id}), {scoring.kind}, delivered by {scoring.delivery}",
        f"  engine    : {scoring.engine}",
        f"  rows      : {manifest.input.rows} in -> {out.rows} out, "
        f"{manifest.quarantine.rows} quarantined",
        f"  input     : {manifest.input.path}",
        f"  output    : {out.path}",
        f"  manifest  : {out.path}/_manifest.json",
        f"  workers   : {scoring.python_workers} Python workers, {scoring.model_loads} model loads",
        f"  durations : {durations}",
        "  query     : SELECT * FROM parquet.`" + table_root + "` "
        f"WHERE ds = DATE'{manifest.run_date}' ORDER BY {columns[0]} DESC LIMIT 10",
        *recorded,
    ]
