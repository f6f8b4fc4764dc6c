"""Download and load MLflow model artifacts, on the driver or on a Python worker.

sklearn-flavoured models are loaded as the raw estimator (we need ``classes_`` and
``predict_proba``); any other flavour is loaded as a generic pyfunc model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batch_serving.errors import ModelLoadError, RegistryError
from batch_serving.models.registry import ModelRef

Flavor = Literal["sklearn", "pyfunc"]


@dataclass(frozen=True)
class ModelInputSpec:
    """The model signature's inputs: column names and MLflow type names, in order."""

    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True)
class LoadedModel:
    flavor: Flavor
    obj: Any
    inputs: ModelInputSpec | None


def download_model(ref: ModelRef, dst_dir: str | Path) -> Path:
    """Copy the model's artifact directory locally (from a file store or an HTTP server)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=ref.artifact_uri,
            dst_path=str(dst_dir),
            tracking_uri=ref.tracking_uri,
            registry_uri=ref.registry_uri,
        )
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"cannot download artifacts of {ref.uri} from {ref.artifact_uri}: {exc}"
        ) from None
    return Path(local)


def load_model_dir(
    model_dir: Path, label: str, extra_trusted_types: tuple[str, ...] = ()
) -> LoadedModel:
    """Load a local MLflow model directory; ``label`` names the model in error messages."""
    from mlflow.models import Model

    try:
        meta = Model.load(str(model_dir / "MLmodel"))
    except Exception as exc:
        raise ModelLoadError(f"{label}: cannot read MLmodel in {model_dir}: {exc}") from None
    inputs = _signature_inputs(meta)
    if "sklearn" in meta.flavors:
        obj = _load_sklearn(model_dir, meta.flavors["sklearn"], label, extra_trusted_types)
        return LoadedModel("sklearn", obj, inputs)
    import mlflow.pyfunc

    try:
        return LoadedModel("pyfunc", mlflow.pyfunc.load_model(str(model_dir)), inputs)
    except Exception as exc:
        raise ModelLoadError(f"{label}: cannot load pyfunc model: {exc}") from None


def fetch_and_load(ref: ModelRef, extra_trusted_types: tuple[str, ...] = ()) -> LoadedModel:
    """Worker-side loading for ``per_partition``: download from the registry, then load."""
    with tempfile.TemporaryDirectory(prefix="bs-model-") as tmp:
        return load_model_dir(download_model(ref, tmp), ref.uri, extra_trusted_types)


def _load_sklearn(
    model_dir: Path, flavor: dict[str, Any], label: str, extra_trusted: tuple[str, ...]
) -> Any:
    data_path = model_dir / flavor.get("pickled_model", "model.pkl")
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(model_dir))
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    trusted = [*(flavor.get("skops_trusted_types") or []), *extra_trusted]
    try:
        return skops.io.load(data_path, trusted=trusted)
    except UntrustedTypesFoundException:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=data_path)) - set(trusted))
        raise ModelLoadError(
            f"{label}: skops refuses untrusted types {untrusted}; if you trust this model, "
            f"log it with skops_trusted_types={untrusted} or list them under "
            "model.skops_trusted_types in the job config"
        ) from None


def _signature_inputs(meta: Any) -> ModelInputSpec | None:
    signature = getattr(meta, "signature", None)
    if signature is None or signature.inputs is None:
        return None
    try:
        names = signature.inputs.input_names()
        types = signature.inputs.input_types()
    except Exception:
        return None
    if not names or any(not isinstance(n, str) for n in names):
        return None  # tensor signatures have no column names
    columns = tuple(
        (str(name), getattr(t, "name", str(t)).lower())
        for name, t in zip(names, types, strict=True)
    )
    return ModelInputSpec(columns)
