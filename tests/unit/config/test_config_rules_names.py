"""Rule names checked at config load (issue #31 items 1 and 7): a rule that reads a shadow, an
unknown member, an output no model has, an input column, or a literal of the wrong kind is
exit 2 before Spark starts, naming the rule and the name's position in its ``when``. Fast: no
JVM, no registry."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from batch_serving.cli import main
from batch_serving.config import load_config
from batch_serving.config.rules import OUTPUT_KINDS
from batch_serving.errors import ConfigError
from batch_serving.models.adapters.base import PREDICTED_LABEL, PREDICTION, PROBABILITIES

MEMBERS = {
    "challenger": {"name": "churn", "alias": "challenger", "role": "shadow"},
    "tenure_adj": {
        "name": "churn_tenure",
        "alias": "champion",
        "inputs": ["champion.score", "tenure_months"],
    },
}
ENSEMBLE = {"members": ["champion", "tenure_adj"], "method": "weighted_mean", "weights": [0.7, 0.3]}


def job(tmp_path: Path, rules: list[str], **sections: Any) -> dict[str, Any]:
    """A valid multi-model job file as a dict; ``rules`` are the ``when`` texts in order."""
    data: dict[str, Any] = {
        "job": "rules_names",
        "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///x/mlflow.db"},
        "input": {"path": str(tmp_path / "in")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        "catalog": {"enabled": False},
        "tracking": {"log_runs": False},
        "members": copy.deepcopy(MEMBERS),
        "rules": [{"when": w, "action": f"a{i}"} for i, w in enumerate(rules)]
        + [{"otherwise": "allow"}],
    }
    data.update(sections)
    return data


def load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def refusal(tmp_path: Path, rules: list[str], **sections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, job(tmp_path, rules, **sections))
    return str(info.value)


# --- issue #31 item 1: a shadow never decides what is served ---------------------------------


def test_a_rule_reading_a_shadow_is_refused_at_load_naming_rule_member_and_position(
    tmp_path: Path,
) -> None:
    message = refusal(tmp_path, ["challenger.score >= 0.5"])
    assert message.startswith(
        "rules[0].when: 'challenger.score' reads shadow 'challenger' at position 0 in "
        '"challenger.score >= 0.5"; a shadow never changes what is served'
    )


def test_a_shadow_deep_in_a_later_rule_is_found_at_its_position(tmp_path: Path) -> None:
    when = "score >= 0.9 or (tenure_adj.prediction > 1 and 0.5 <= challenger.score)"
    message = refusal(tmp_path, ["score >= 0.99", when], ensemble=ENSEMBLE)
    assert message.startswith("rules[1].when: 'challenger.score' reads shadow 'challenger'")
    assert f'at position 54 in "{when}"' in message
    assert when[54:].startswith("challenger.score")


def test_score_command_exits_2_on_a_shadow_rule_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(tmp_path, ["challenger.score >= 0.5"])))
    code = main(["score", "--config", str(path), "--run-date", "2026-11-22"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "rules[0].when" in err and "reads shadow 'challenger'" in err
    assert not (tmp_path / "out").exists()


def test_rules_on_the_champion_still_load_beside_a_shadow(tmp_path: Path) -> None:
    """The shadow's would-be action reads ``champion.*`` with the shadow in its place."""
    cfg = load(tmp_path, job(tmp_path, ["champion.score >= 0.5 or score >= 0.9"]))
    assert cfg.members["challenger"].role == "shadow"


# --- issue #31 item 7a: every name checkable at load is checked there ------------------------


@pytest.mark.parametrize(
    ("when", "sections", "expected"),
    [
        (
            "score >= 0.2 and chalenger.score >= 0.5",
            {},
            "rules[0].when: unknown member 'chalenger' in 'chalenger.score' at position 17",
        ),
        (
            "champion.scroe >= 0.5",
            {},
            "rules[0].when: unknown output 'scroe' of member 'champion' at position 0 in "
            "\"champion.scroe >= 0.5\"; did you mean 'champion.score'?",
        ),
        (
            "0.5 < scroe",
            {},
            "rules[0].when: unknown column 'scroe' at position 6 in \"0.5 < scroe\"; "
            "did you mean 'score'?",
        ),
        (
            "tenure_months >= 12",
            {},
            "rules[0].when: unknown column 'tenure_months' at position 0",
        ),
        (
            "ensemble.score >= 0.5",
            {},
            "rules[0].when: 'ensemble.score' without an ensemble at position 0",
        ),
        (
            "ensemble.mean >= 0.5",
            {"ensemble": ENSEMBLE},
            "rules[0].when: unknown column 'ensemble.mean' at position 0",
        ),
        (
            "prediction > 1",
            {"ensemble": ENSEMBLE},  # the served column is then the ensemble's score only
            "rules[0].when: unknown column 'prediction' at position 0",
        ),
        ("action == 'x'", {}, "rules[0].when: rules cannot read 'action' at position 0"),
        (
            "tenure_adj.predicted_label == 1",
            {},
            "rules[0].when: 'tenure_adj.predicted_label' is a string, compared with number 1",
        ),
        (
            "score == 'high'",
            {},
            "rules[0].when: 'score' is a number, compared with string \"high\" at position 0",
        ),
        (
            "champion.probabilities == 0.5",
            {},
            "rules[0].when: 'champion.probabilities' is a map of class probabilities",
        ),
    ],
)
def test_names_no_model_can_have_are_refused_at_load(
    tmp_path: Path, when: str, sections: dict[str, Any], expected: str
) -> None:
    assert refusal(tmp_path, [when], **sections).startswith(expected)


def test_an_input_column_in_a_rule_says_rules_read_model_outputs(tmp_path: Path) -> None:
    message = refusal(tmp_path, ["tenure_months >= 12"], ensemble=ENSEMBLE)
    assert "rules read the served columns ['score']" in message
    assert "of members ['champion', 'tenure_adj'] (not shadows ['challenger'])" in message
    assert "or ensemble.score; input columns feed models, not rules" in message


def test_a_renamed_score_column_is_the_name_rules_use(tmp_path: Path) -> None:
    output = {"root": str(tmp_path / "out"), "score_column": "churn_p"}
    assert load(tmp_path, job(tmp_path, ["champion.churn_p >= 0.5"], output=output))
    message = refusal(tmp_path, ["champion.score >= 0.5"], output=output)
    assert message.startswith("rules[0].when: unknown output 'score' of member 'champion'")


def test_the_shipped_job_and_the_readme_example_load(tmp_path: Path) -> None:
    assert load_config(REPO / "conf" / "jobs" / "churn.yaml").rules
    readme = [
        "ensemble.score >= 0.85",
        "ensemble.score >= 0.5 or champion.score >= 0.9",
    ]
    cfg = load(tmp_path, job(tmp_path, readme, ensemble=ENSEMBLE))
    assert len(cfg.rules) == 3


def test_the_outputs_known_at_load_are_the_adapters_outputs() -> None:
    """config sits below models, so it names the outputs itself; they must stay the same."""
    assert set(OUTPUT_KINDS) == {PREDICTION, PREDICTED_LABEL, PROBABILITIES}
