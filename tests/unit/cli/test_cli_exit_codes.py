"""The exit-code table is defined once, on the exception classes, and every command's --help
shows all of it; arguments fail with one line that says what is wrong (no Spark here)."""

from __future__ import annotations

import argparse
import inspect

import pytest

from batch_serving import errors
from batch_serving.cli import commands, main
from batch_serving.cli.exit_codes import exit_codes_epilog, exit_codes_markdown
from batch_serving.cli.parser import build_parser
from batch_serving.errors import BatchServingError, exit_code_table

COMMANDS = [
    "score",
    "check-input",
    "check-output",
    "resolve-input",
    "recover",
    "backfill",
    "sql",
    "publish",
    "serve",
    "demo",
    "export-onnx",
    "stream",
    "schema",
    "runs",
    "report",
    "learn",
    "learn-stream",
    "snapshot",
    "promote",
    "rollback",
    "training-set",
]


def error_classes() -> list[type[BatchServingError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BatchServingError)
    ]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_error_code_is_in_the_table_with_its_meaning() -> None:
    table = {row.code: row for row in exit_code_table()}
    assert sorted(table) == list(range(13))  # 0 success ... 11 promotion gate, 12 features differ
    for cls in error_classes():
        assert cls.exit_code in table, cls
        parent = cls.__mro__[1]
        if cls is not BatchServingError and cls.exit_code != parent.exit_code:
            # a class with a code of its own must say what it means, or the table misses it
            assert "meaning" in vars(cls), f"{cls.__name__} sets exit_code {cls.exit_code}"
            assert cls.meaning in table[cls.exit_code].meanings
    assert table[7].errors == ("StorageError", "LeaseHeldError", "ServingStoreError")
    assert table[2].errors == ("ConfigError", "QueryError")
    assert table[0].meanings == ("success",)


def test_every_command_has_the_whole_table_in_its_help() -> None:
    found = subcommands()
    assert sorted(found) == sorted(COMMANDS)
    codes = [row.code for row in exit_code_table()]
    for name, command in [("batch-serving", build_parser()), *found.items()]:
        epilog = command.format_help().split("exit codes:\n", 1)[1]
        lines = epilog.splitlines()
        for row in exit_code_table():
            first_words = row.meanings[0].replace("`", "").split()[:3]
            (line,) = [line for line in lines if line.startswith(f"  {row.code:<3}")]
            assert line.split()[1:4] == first_words, (name, row.code, line)
        assert [int(line.split()[0]) for line in lines if line[2:3].isdigit()] == codes, name


def test_every_command_but_serve_takes_json() -> None:
    """Every command with a result can print it as one JSON object (``serve`` runs until
    stopped and has none)."""
    for name, command in subcommands().items():
        flags = {flag for action in command._actions for flag in action.option_strings}
        assert ("--json" in flags) == (name != "serve"), name


def test_every_meaning_appears_in_epilog_and_markdown() -> None:
    epilog = " ".join(exit_codes_epilog().split())  # wrapped lines joined again
    markdown = exit_codes_markdown()
    assert markdown.startswith("| code | meaning |\n|---|---|\n")
    for row in exit_code_table():
        assert f"\n| {row.code} | {'; '.join(row.meanings)} |\n" in markdown
        for meaning in row.meanings:
            assert meaning.replace("`", "") in epilog
    assert "`validation.max_bad_rows`" in markdown and "`" not in epilog


def test_impossible_run_date_says_the_date_does_not_exist(tmp_path, capsys) -> None:
    code = main(["check-input", "--config", str(tmp_path / "x.yaml"), "--run-date", "2026-11-31"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--run-date 2026-11-31" in err
    assert "day is out of range for month" in err and "YYYY-MM-DD" not in err


def test_backfill_names_the_bad_bound(tmp_path, capsys) -> None:
    args = ["backfill", "--config", str(tmp_path / "x.yaml"), "--from", "2026-02-29"]
    assert main([*args, "--to", "2026-03-01"]) == 2
    assert "--from 2026-02-29" in capsys.readouterr().err
    assert main(["backfill", "--config", "x", "--from", "2026-03-01", "--to", "1/3/26"]) == 2
    assert "--to must be YYYY-MM-DD, got '1/3/26'" in capsys.readouterr().err


def test_sql_requires_a_config(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sql", "SELECT 1"])
    assert exit_.value.code == 2
    assert "the following arguments are required: --config" in capsys.readouterr().err


def test_demo_help_names_its_own_default_config(capsys) -> None:
    help_text = " ".join(subcommands()["demo"].format_help().split())
    assert "default: conf/jobs/churn.yaml, the demo's own job" in help_text
    assert subcommands()["sql"].get_default("config") is None


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "--run-date", "2026-11-22"],
        ["recover"],
        ["report"],
        ["runs"],
        ["backfill", "--from", "2026-11-22", "--to", "2026-11-22", "--model-alias", "gold"],
        ["sql", "SELECT 1"],
    ],
)
def test_json_is_accepted_and_a_failure_leaves_stdout_empty(argv, tmp_path, capsys) -> None:
    missing = str(tmp_path / "missing.yaml")
    code = main([argv[0], "--json", "--config", missing, *argv[1:]])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == f"error: cannot read config {missing}: No such file or directory\n"


def test_backfill_takes_model_alias_or_version_not_both(capsys) -> None:
    parsed = build_parser().parse_args(
        ["backfill", "--config", "c", "--from", "d", "--to", "d", "--model-version", "3"]
    )
    assert (parsed.model_version, parsed.model_alias) == (3, None)
    both = ["--model-version", "3", "--model-alias", "gold"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["backfill", "--config", "c", "--from", "d", "--to", "d", *both])
    assert "not allowed with argument" in capsys.readouterr().err


def test_unexpected_spark_error_is_one_line_without_py4j(monkeypatch, capsys) -> None:
    py4j_error = type("Py4JJavaError", (Exception,), {"__module__": "py4j.protocol"})
    text = (
        "An error occurred while calling o53.sql.\n"
        ": org.apache.spark.SparkException: Job aborted: disk full\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(x.scala:1)\n"
    )

    def broken(args: argparse.Namespace) -> int:
        raise py4j_error(text)

    monkeypatch.setattr(commands, "schema_command", broken)
    assert main(["schema"]) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected Spark error: Job aborted: disk full\n"


def test_only_errors_py_defines_the_table() -> None:
    class ElsewhereError(errors.StorageError):  # e.g. a test's or a plugin's own class
        exit_code = 42
        meaning = "defined outside errors.py"

    assert 42 not in [row.code for row in exit_code_table()]
    assert "ElsewhereError" not in str(exit_code_table())
