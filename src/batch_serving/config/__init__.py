"""Configuration: YAML job files and API settings validated into typed, frozen models.

Imports only pydantic, pydantic-settings and PyYAML, so Airflow's virtualenv can load job
files with the same rules as the jobs (``airflow_dags/``). Modules: ``sections`` (one model
per job-file section; ``stream`` holds the ``stream:`` one), ``job`` (JobConfig and its
cross-section rules), ``paths`` (relative paths, URIs, overlaps), ``loader`` (YAML, overlays,
load_config), ``serve`` (API settings), ``environment`` (the process environment),
``validate`` (errors that name the key).
"""

from batch_serving.config.environment import prepare_process_env, running_under_spark_submit
from batch_serving.config.job import JobConfig
from batch_serving.config.loader import load_config, overlay_path_for, parse_run_date
from batch_serving.config.paths import absolutize_path, absolutize_uri, overlap, project_root
from batch_serving.config.sections import (
    CatalogConfig,
    Engine,
    ExpectationConfig,
    InputConfig,
    LoadingConfig,
    LoadingStrategy,
    ModelConfig,
    OutputConfig,
    PublishConfig,
    ScheduleConfig,
    SparkConfig,
    StorageConfig,
    TrackingConfig,
    ValidationConfig,
)
from batch_serving.config.serve import MODEL_NAME, ServeSettings, load_serve_settings
from batch_serving.config.stream import StreamConfig

_absolutize_uri = absolutize_uri  # the name before the split into modules

__all__ = [
    "MODEL_NAME",
    "CatalogConfig",
    "Engine",
    "ExpectationConfig",
    "InputConfig",
    "JobConfig",
    "LoadingConfig",
    "LoadingStrategy",
    "ModelConfig",
    "OutputConfig",
    "PublishConfig",
    "ScheduleConfig",
    "ServeSettings",
    "SparkConfig",
    "StorageConfig",
    "StreamConfig",
    "TrackingConfig",
    "ValidationConfig",
    "_absolutize_uri",
    "absolutize_path",
    "absolutize_uri",
    "load_config",
    "load_serve_settings",
    "overlap",
    "overlay_path_for",
    "parse_run_date",
    "prepare_process_env",
    "project_root",
    "running_under_spark_submit",
]
