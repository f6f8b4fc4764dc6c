"""CatBoost runtime (``mlflow.catboost``): ``CatBoostClassifier``, ``CatBoostRegressor``,
``CatBoostRanker`` or a generic ``CatBoost``.

A classifier keeps its own class labels (strings included) and is scored by
``predict_proba``; a regressor or ranker by ``predict``. A generic ``CatBoost`` trained with
a classification loss has classes but no ``predict_proba`` and is refused (log a
``CatBoostClassifier``). A model fit on a DataFrame is fed by name, so its categorical
(string) columns reach it as strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batch_serving.models.adapters.base import estimator_kind
from batch_serving.models.adapters.native import NativeAdapter, Traits, unnamed


class CatboostAdapter(NativeAdapter):
    name = "catboost"

    def load_native(self, model_dir: Path) -> Any:
        import mlflow.catboost

        return mlflow.catboost.load_model(str(model_dir))

    def traits(self, obj: Any, label: str) -> Traits:
        names = list(obj.feature_names_ or [])
        placeholder = [str(i) for i in range(len(names))]
        fitted = None if unnamed(names, placeholder) else tuple(str(n) for n in names)
        kind, labels = estimator_kind(obj, self.name, label)
        return Traits(kind, labels, fitted)

    def probabilities(self, obj: Any, x: Any) -> Any:
        return obj.predict_proba(x, thread_count=1)

    def values(self, obj: Any, x: Any) -> Any:
        return obj.predict(x, thread_count=1)
