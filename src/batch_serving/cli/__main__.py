"""``python -m batch_serving.cli``: the same as the ``batch-serving`` console script."""

from batch_serving.cli import run

run()
