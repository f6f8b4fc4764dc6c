"""Human-readable run summaries, built from the manifest (so logs and files agree)."""

from __future__ import annotations

from typing import Any


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    model = manifest["model"]
    scoring = manifest["scoring"]
    out = manifest["output"]
    pointer = f"@{model['alias']}" if model.get("alias") else f"/{model['version']}"
    durations = ", ".join(f"{k} {v:.1f}s" for k, v in manifest.get("durations_s", {}).items())
    table_root = out["path"].rsplit("/", 1)[0]
    columns = scoring["output_columns"]
    recorded = []
    if manifest.get("tables"):
        recorded.append(f'  tables    : {", ".join(manifest["tables"])} (batch-serving sql "...")')
    if "mlflow_run_id" in manifest:
        run = manifest["mlflow_run_id"] or "not logged (tracking server unavailable, see log)"
        recorded.append(f"  mlflow    : run {run}")
    return [
        f"batch-serving: job {manifest['job']} scored {manifest['run_date']} "
        f"(run {manifest['run_id']})",
        f"  model     : {model['name']} v{model['version']} (models:/{model['name']}{pointer}, "
        f"mlflow run {model['run_id']}), {scoring['kind']}, delivered by {scoring['delivery']}",
        f"  engine    : {scoring['engine']}",
        f"  rows      : {manifest['input']['rows']} in -> {out['rows']} out, "
        f"{manifest['quarantine']['rows']} quarantined",
        f"  input     : {manifest['input']['path']}",
        f"  output    : {out['path']}",
        f"  manifest  : {out['path']}/_manifest.json",
        f"  workers   : {scoring['python_workers']} Python workers, "
        f"{scoring['model_loads']} model loads",
        f"  durations : {durations}",
        "  query     : SELECT * FROM parquet.`" + table_root + "` "
        f"WHERE ds = DATE'{manifest['run_date']}' ORDER BY {columns[0]} DESC LIMIT 10",
        *recorded,
    ]
