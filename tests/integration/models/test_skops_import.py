"""``skops.io`` through ``import_skops_io`` in a fresh interpreter: the default trusted names
equal skops' own, scikit-learn's unrelated modules stay unimported, and a model still loads
(the sklearn adapter's path, in the driver and in every Python worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from batch_serving.models.adapters.skops_import import import_skops_io, live_names
skops_io = import_skops_io()
from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES
untouched = [m for m in ("sklearn.naive_bayes", "sklearn.datasets", "pytest") if m in sys.modules]
from sklearn.linear_model import LogisticRegression
import numpy as np
model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
skops_io.dump(model, sys.argv[1])
loaded = skops_io.load(sys.argv[1])
x = np.array([[1.5]])
same = loaded.predict_proba(x).tolist() == model.predict_proba(x).tolist()
print(json.dumps({"names": SKLEARN_ESTIMATOR_TYPE_NAMES, "imported": untouched, "same": same,
                  "live": live_names()["names"]}))
"""


def test_skops_trusts_the_same_names_without_importing_all_of_sklearn(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "m.skops")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["imported"] == []  # measured before the live listing imports them all
    assert got["names"] == got["live"] and len(got["names"]) > 100
    assert got["same"]
