"""scikit-learn runtime: the raw estimator (we need ``classes_`` and ``predict_proba``).

MLflow 3 logs sklearn models with skops by default; an untrusted type is refused with a
message that names it and says how to allow it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import (
    Adapter,
    Feed,
    ModelInputSpec,
    ModelSpec,
    OutputRequest,
    classifier_or_regression_spec,
    empty_outputs,
    estimator_kind,
    feature_matrix,
    from_probabilities,
    from_values,
    resolve_features,
)


class SklearnAdapter(Adapter):
    name = "sklearn"

    def __init__(self, trusted_types: tuple[str, ...] = ()) -> None:
        self.trusted_types = trusted_types

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        if flavor_conf.get("serialization_format", "pickle") != "skops":
            import mlflow.sklearn

            return mlflow.sklearn.load_model(str(model_dir))
        from batch_serving.models.adapters.skops_import import import_skops_io

        skops_io = import_skops_io()  # before any skops.io submodule: see skops_import
        from skops.io.exceptions import UntrustedTypesFoundException

        data_path = model_dir / flavor_conf.get("pickled_model", "model.pkl")
        trusted = [*(flavor_conf.get("skops_trusted_types") or []), *self.trusted_types]
        try:
            return skops_io.load(data_path, trusted=trusted)
        except UntrustedTypesFoundException:
            untrusted = sorted(set(skops_io.get_untrusted_types(file=data_path)) - set(trusted))
            raise ModelLoadError(
                f"{label}: skops refuses untrusted types {untrusted}; if you trust this model, "
                f"log it with skops_trusted_types={untrusted} or list them under "
                "model.skops_trusted_types in the job config"
            ) from None

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        fitted_names = getattr(model, "feature_names_in_", None)
        fitted = tuple(str(c) for c in fitted_names) if fitted_names is not None else None
        cols = resolve_features(request.features, fitted, inputs, label)
        feed: Feed = "pandas" if fitted is not None else "numpy"
        kind, labels = estimator_kind(model, self.name, label)
        return classifier_or_regression_spec(
            self.name, kind, labels, cols, feed, inputs, request, label
        )

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        if batch.num_rows == 0:
            return empty_outputs(spec)
        x = feature_matrix(spec, batch)
        if spec.kind == "regression":
            return from_values(model.predict(x), batch.num_rows)
        return from_probabilities(spec, model.predict_proba(x))
