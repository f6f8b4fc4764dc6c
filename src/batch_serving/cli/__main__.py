"""``python -m batch_serving.cli``: the same as the ``batch-serving`` console script."""

import sys

from batch_serving.cli import main

sys.exit(main())
