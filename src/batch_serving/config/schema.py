"""The JSON Schema of a job file (``batch-serving schema``), generated from ``JobConfig``.

Editors validate and complete job files with it, e.g. with a first line
``# yaml-language-server: $schema=job.schema.json``. It describes one file as written, before
an ``--env`` overlay is merged (an overlay alone lacks the required keys), and the rules that
span keys (alias xor version, member references, the rules grammar) are checked only by
loading the file: ``batch-serving check-input`` or any other command.
"""

from __future__ import annotations

from typing import Any

from batch_serving.config.job import JobConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def job_schema() -> dict[str, Any]:
    """``JobConfig.model_json_schema()`` with its dialect (JSON Schema draft 2020-12)."""
    return {"$schema": DIALECT, **JobConfig.model_json_schema()}
