"""Pre- and post-flight checks that orchestrators run as their own tasks (no Spark session).

``check_input`` fails fast, before a Spark job is even submitted, on what would fail the run
anyway: a missing or unreadable partition, an unreachable registry or unknown alias, columns
the model needs that the input lacks or cannot convert, an empty partition. (Value-level
gates, the Great Expectations suites, run inside the score job on the data it scores.)
``check_output`` repairs an interrupted commit of the date, then confirms that the date's
predictions partition is committed, reconciled and passed its gates: what ``publish`` requires.
"""

from __future__ import annotations

import datetime as dt
import tempfile

from batch_serving.config import JobConfig
from batch_serving.models.loading import load_and_describe, output_request
from batch_serving.models.registry import resolve_model
from batch_serving.quality.checks import check_not_empty
from batch_serving.runs.recovery import holding_date, recover_date
from batch_serving.scoring.ensemble import from_config
from batch_serving.scoring.plan import Member, build_plan
from batch_serving.scoring.rules import parse_rules
from batch_serving.tables.files import inspect_input, local_path
from batch_serving.tables.inputs import missing_partition, partition_exists, partition_path
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.verify import verify_committed


def check_input(cfg: JobConfig, run_date: dt.date) -> list[str]:
    if not partition_exists(cfg.input, run_date):
        raise missing_partition(cfg.input, run_date)
    where = partition_path(cfg.input, run_date)
    members = []
    with tempfile.TemporaryDirectory(prefix="bs-check-") as tmp:
        for model in cfg.member_models():
            ref = resolve_model(model.model)
            request = output_request(cfg, model.model, champion=model.role == "champion")
            spec, _, _ = load_and_describe(model.model, request, ref, tmp)
            members.append(Member(model.key, ref, spec, model.role, model.inputs))
    found = inspect_input(local_path(where))
    build_plan(  # columns, types, member references and rule names, as the run will check them
        members,
        cfg.entity_columns,
        found.schema,
        "check-input",
        dt.datetime.now(dt.UTC),
        where,
        multi=cfg.multi_model,
        ensemble=from_config(cfg.ensemble),
        rules=parse_rules(cfg.rules) if cfg.rules else None,
        score_column=cfg.output.score_column,
    )
    check_not_empty(found.rows, cfg.validation.allow_empty, where)
    return [
        f"input ok: {where}",
        f"  rows     : {found.rows} in {len(found.files)} files",
        *(
            f"  model    : {m.key} {m.ref.uri} ({m.spec.kind}, {len(m.spec.features)} "
            "features, all present)"
            for m in members
        ),
    ]


def check_output(cfg: JobConfig, run_date: dt.date, wait: bool = False) -> list[str]:
    path = predictions_layout(cfg.output.root, cfg.model.name).partition_dir(run_date)
    with holding_date(cfg, run_date, "check-output", wait):
        restored = recover_date(cfg, run_date)
        manifest = verify_committed(path)
    gates = ", ".join(f"{k} passed" for k in manifest.validation) or "no gates"
    return [
        f"output ok: {path}" + (" (interrupted commit repaired)" if restored else ""),
        f"  rows     : {manifest.output.rows} (input {manifest.input.rows}, "
        f"quarantined {manifest.quarantine.rows}); {gates}",
        f"  run      : {manifest.run_id}, model v{manifest.model.version}",
    ]
