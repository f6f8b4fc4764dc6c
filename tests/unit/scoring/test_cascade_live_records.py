"""The cascade in the feature manifest (no JVM, no registry): it round-trips through the JSON
publish writes, a manifest written before it existed loads without one, and the live path
checks it again against the pinned members (a stage no member pins is named)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batch_serving.config.cascade import CascadeConfig
from batch_serving.errors import ConfigError, ServingStoreError
from batch_serving.serving.live_scoring import _cascade
from batch_serving.serving.records import FeatureHeader, FeatureManifest, PinnedMember

SURE = "score <= 0.2 or score >= 0.8"
CASCADE = {"stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}]}
LAYOUT = {"rows": 3, "key_type": "int64", "value_columns": ["tenure_months"]}


def pinned(key: str, role: str, version: int) -> PinnedMember:
    return PinnedMember(key=key, role=role, name=f"m_{key}", version=version)


def header(**fields: Any) -> FeatureHeader:
    members = [pinned("champion", "champion", 3), pinned("big", "member", 7)]
    return FeatureHeader(snapshot_id="features-r1", model="churn", members=members, **fields)


def read_back(written: FeatureHeader) -> FeatureManifest:
    """What the API reads: the header as publish writes it, plus the file's layout."""
    data = json.loads(written.to_json())
    return FeatureManifest.from_json(json.dumps({**data, **LAYOUT}), "features of churn")


def test_the_cascade_round_trips_through_the_feature_manifest() -> None:
    written = header(cascade=CascadeConfig.model_validate(CASCADE))
    assert json.loads(written.to_json())["cascade"] == CASCADE
    info = read_back(written)
    assert info.cascade == CascadeConfig.model_validate(CASCADE)
    cascade = _cascade(info)
    assert cascade is not None
    assert cascade.members == ("champion", "big")
    assert cascade.describe() == [
        f"cascade.stages[0]: champion answers if {SURE}",
        "cascade.stages[1]: big answers the rest",
    ]


def test_a_manifest_without_a_cascade_loads_as_before() -> None:
    info = read_back(header())
    assert "cascade" not in json.loads(header().to_json())
    assert info.cascade is None
    assert _cascade(info) is None
    assert [m.key for m in info.members] == ["champion", "big"]


def test_a_stage_no_pinned_member_has_is_named() -> None:
    stages = [{"member": "champion", "answer_if": SURE}, {"member": "huge"}]
    info = read_back(header(cascade=CascadeConfig.model_validate({"stages": stages})))
    with pytest.raises(ConfigError, match=r"cascade\.stages\[1\]\.member: unknown member 'huge'"):
        _cascade(info)


def test_an_unreadable_cascade_names_the_manifest_and_the_field() -> None:
    bad = {"stages": [{"answer_if": 1}]}
    data = {**json.loads(header().to_json()), **LAYOUT, "cascade": bad}
    with pytest.raises(
        ServingStoreError,
        match=r"(?s)^unreadable features of churn: .*\ncascade\.stages\.0\.member\n",
    ):
        FeatureManifest.from_dict(data, "features of churn")
