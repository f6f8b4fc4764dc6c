"""``batch-serving promote`` and ``batch-serving rollback`` (issue #25): move ``@champion``
through the gates, or back. Thin: the work is in ``batch_serving.learning``."""

from __future__ import annotations

import argparse
import getpass

from batch_serving.cli.output import emit


def add_learning_commands(sub: argparse._SubParsersAction) -> None:
    from batch_serving.cli.parser import add_command

    promote = add_command(
        sub,
        "promote",
        help="move @champion to @challenger if every gate passes on recent labelled data",
        description="Scores the labels of the last `evaluation_days` days up to --run-date "
        "(matched point in time to the job's predictions and inputs) with both versions, "
        "checks the gates of --learning (metric margin, ECE, score PSI, flip rate, rows) and "
        "moves @champion only if all pass; the evidence is an MLflow run in the "
        "`batch-serving-promotions` experiment plus registry tags. A failed gate exits 11.",
    )
    _add_common(promote)
    promote.add_argument("--run-date", required=True, help="last label day (YYYY-MM-DD)")
    promote.set_defaults(func=promote_command)

    rollback = add_command(
        sub,
        "rollback",
        help="move @champion back to the version the last promotion replaced",
        description="Reads the registered model's bs.previous_champion tag (set by promote), "
        "moves @champion there and records the rollback like a promotion. Nothing to roll "
        "back to exits 3.",
    )
    _add_common(rollback)
    rollback.set_defaults(func=rollback_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    from batch_serving.cli.options import add_json_argument

    parser.add_argument("--config", required=True, help="job config YAML (model, tables)")
    parser.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    parser.add_argument("--learning", required=True, help="learning.yaml (labels, gates)")
    parser.add_argument("--actor", help="who promotes, recorded as evidence (default: user)")
    add_json_argument(parser)


def promote_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.learning.run import promote_recent
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    result = promote_recent(job, learning, parse_run_date(args.run_date), _actor(args))
    record = {
        "model": result.name,
        "promoted": result.promoted,
        "champion": result.challenger,
        "replaced": result.champion_before,
        "run_id": result.run_id,
        "gates": [g.describe() for g in result.report.gates],
    }
    lines = [
        f"batch-serving: {result.name} version {result.challenger} promoted to "
        f"@{learning.champion_alias} (was {result.champion_before}); evidence run {result.run_id}",
        *(f"  {g.describe()}" for g in result.report.gates),
    ]
    emit(args.json, record, lines)
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.learning.run import rollback_champion
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    result = rollback_champion(job, learning, _actor(args))
    record = {
        "model": result.name,
        "champion": result.champion,
        "rolled_back_from": result.rolled_back_from,
        "run_id": result.run_id,
    }
    lines = [
        f"batch-serving: {result.name} @{learning.champion_alias} rolled back from version "
        f"{result.rolled_back_from} to {result.champion}; evidence run {result.run_id}"
    ]
    emit(args.json, record, lines)
    return 0


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor) if args.actor else f"cli:{getpass.getuser()}"
