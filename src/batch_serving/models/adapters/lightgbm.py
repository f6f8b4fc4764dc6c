"""LightGBM runtime (``mlflow.lightgbm``): an ``LGBMClassifier``/``LGBMRegressor`` or a Booster.

An estimator is scored like sklearn (``classes_`` + ``predict_proba``, string labels kept).
A native Booster is told by its objective: ``binary`` gives P(class 1) (classes 0, 1),
``multiclass``/``multiclassova`` one probability per class 0..k-1, a regression or ranking
objective its prediction; a custom objective gives raw scores and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batch_serving.models.adapters.base import estimator_kind
from batch_serving.models.adapters.native import (
    NativeAdapter,
    Traits,
    objective_refused,
    unnamed,
    with_negative_class,
)

BINARY = {"binary"}
MULTICLASS = {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}
VALUES = {
    "regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "rmse",
    "regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair", "poisson",
    "quantile", "mape", "mean_absolute_percentage_error", "gamma", "tweedie",
    "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda",
    "lambdarank", "rank_xendcg", "xendcg", "xe_ndcg", "xe_ndcg_mart", "xendcg_mart",
}  # fmt: skip


class LightgbmAdapter(NativeAdapter):
    name = "lightgbm"

    def load_native(self, model_dir: Path) -> Any:
        import mlflow.lightgbm

        return mlflow.lightgbm.load_model(str(model_dir))

    def traits(self, obj: Any, label: str) -> Traits:
        if not _is_booster(obj):
            names = getattr(obj, "feature_names_in_", None)
            fitted = tuple(str(c) for c in names) if names is not None else None
            kind, labels = estimator_kind(obj, self.name, label)
            return Traits(kind, labels, fitted)
        names = obj.feature_name()
        fitted = None if unnamed(names, [f"Column_{i}" for i in range(len(names))]) else names
        objective = str(obj.params.get("objective", "")).split(" ")[0]
        if objective in BINARY:
            return Traits("binary", ("0", "1"), _tuple(fitted))
        if objective in MULTICLASS:
            k = obj.num_model_per_iteration()
            return Traits("multiclass", tuple(str(i) for i in range(k)), _tuple(fitted))
        if objective in VALUES:
            return Traits("regression", (), _tuple(fitted))
        raise objective_refused(
            self.name,
            objective or "custom",
            label,
            "train it with objective binary or multiclass (or log an LGBMClassifier)",
        )

    def probabilities(self, obj: Any, x: Any) -> Any:
        if _is_booster(obj):
            p = obj.predict(x, num_threads=1)
            return with_negative_class(p) if p.ndim == 1 else p
        return obj.predict_proba(x, num_threads=1)

    def values(self, obj: Any, x: Any) -> Any:
        return obj.predict(x, num_threads=1)


def _is_booster(obj: Any) -> bool:
    import lightgbm

    return isinstance(obj, lightgbm.Booster)


def _tuple(names: list[str] | None) -> tuple[str, ...] | None:
    return tuple(str(n) for n in names) if names is not None else None
