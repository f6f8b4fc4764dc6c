"""Configuration: YAML job files and API settings validated into typed, frozen models."""

from batch_serving.config.job import *  # noqa: F403
from batch_serving.config.job import (
    MODEL_NAME,
    JobConfig,
    ServeSettings,
    _absolutize_uri,
    load_config,
    load_serve_settings,
    parse_run_date,
    prepare_process_env,
    running_under_spark_submit,
)
