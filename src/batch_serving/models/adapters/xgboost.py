"""XGBoost runtime (``mlflow.xgboost``): an ``XGBClassifier``/``XGBRegressor`` or a Booster.

XGBoost fits integer codes only, so a classifier's classes are 0..k-1; string labels come
from the MLmodel metadata (``class_labels``, see native.py). A native Booster is told by its
objective: ``binary:logistic`` gives P(class 1), ``multi:softprob`` one probability per class,
``reg:*``/``count:*``/``survival:*``/``rank:*`` a value; ``binary:logitraw``, ``binary:hinge``
and ``multi:softmax`` give margins or labels, not probabilities, and are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batch_serving.models.adapters.base import estimator_kind
from batch_serving.models.adapters.native import (
    NativeAdapter,
    Traits,
    objective_refused,
    with_negative_class,
)

VALUE_PREFIXES = ("reg:", "count:", "survival:", "rank:")


class XgboostAdapter(NativeAdapter):
    name = "xgboost"

    def load_native(self, model_dir: Path) -> Any:
        import mlflow.xgboost

        model = mlflow.xgboost.load_model(str(model_dir))
        booster = model if _is_booster(model) else model.get_booster()
        booster.set_param({"nthread": 1})  # see native.py: one task per core already
        return model

    def traits(self, obj: Any, label: str) -> Traits:
        if not _is_booster(obj):
            names = getattr(obj, "feature_names_in_", None)
            fitted = tuple(str(c) for c in names) if names is not None else None
            kind, labels = estimator_kind(obj, self.name, label)
            return Traits(kind, labels, fitted)
        fitted = tuple(obj.feature_names) if obj.feature_names else None
        learner = json.loads(obj.save_config())["learner"]
        objective = learner["objective"]["name"]
        if objective == "binary:logistic":
            return Traits("binary", ("0", "1"), fitted)
        if objective == "multi:softprob":
            k = int(learner["learner_model_param"]["num_class"])
            return Traits("multiclass", tuple(str(i) for i in range(k)), fitted)
        if objective.startswith(VALUE_PREFIXES):
            return Traits("regression", (), fitted)
        raise objective_refused(
            self.name,
            objective,
            label,
            "train it with objective binary:logistic or multi:softprob (or log an XGBClassifier)",
        )

    def probabilities(self, obj: Any, x: Any) -> Any:
        if _is_booster(obj):
            p = obj.inplace_predict(x)
            return with_negative_class(p) if p.ndim == 1 else p
        return obj.predict_proba(x)

    def values(self, obj: Any, x: Any) -> Any:
        return obj.inplace_predict(x) if _is_booster(obj) else obj.predict(x)


def _is_booster(obj: Any) -> bool:
    import xgboost

    return isinstance(obj, xgboost.Booster)
