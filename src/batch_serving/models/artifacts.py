"""Download an MLflow model's artifact directory and load it with its runtime's adapter.

Runs on the driver (once per job, to describe the model) and, for ``per_partition``
delivery, on workers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from batch_serving.errors import ModelLoadError, RegistryError
from batch_serving.models.adapters import LoadedModel, ModelInputSpec, adapter_for, runtime_of
from batch_serving.models.registry import ModelRef


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
    runtime = runtime_of(meta.flavors)
    adapter = adapter_for(runtime, extra_trusted_types)
    obj = adapter.load(model_dir, meta.flavors.get(runtime, {}), label)
    return LoadedModel(runtime, obj, _signature_inputs(meta))


def fetch_and_load(ref: ModelRef, extra_trusted_types: tuple[str, ...] = ()) -> LoadedModel:
    """Worker-side loading for ``per_partition``: download from the registry, then load."""
    with tempfile.TemporaryDirectory(prefix="bs-model-") as tmp:
        return load_model_dir(download_model(ref, tmp), ref.uri, extra_trusted_types)


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


def directory_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
