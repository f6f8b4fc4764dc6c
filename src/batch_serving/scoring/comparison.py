"""Champion vs shadow: how far a challenger's scores and actions are from the served ones.

Each run summarizes champion vs every shadow member (issue #11): agreement of actions (or of
labels, when the job has no rules), score correlation, mean absolute difference and the
action-flip matrix. Tasks compute a ``ComparisonPartial`` per batch and the driver merges them,
so the scores are never collected. The partial keeps counts, means and centered co-moments
(Chan et al.'s parallel update) rather than raw power sums: raw sums lose the correlation to
cancellation when scores sit far from zero (e.g. prices around 1e6), centered moments do not.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.scoring.ensemble import float_values

NONE = "<none>"  # the action (or label) of a row the model did not score
CORNER = "champion \\ shadow"


@dataclass
class ComparisonPartial:
    """Mergeable statistics of some rows; small and picklable, so tasks can ship it back.

    ``rows`` counts every row; the score moments cover the ``both_scored`` rows whose champion
    AND shadow scores are finite (null, NaN and +-inf are left out). ``agree`` counts rows whose
    two actions are present and equal; ``flips`` counts every (champion, shadow) action pair,
    a missing action written as ``"<none>"``.
    """

    rows: int = 0
    both_scored: int = 0
    mean_x: float = 0.0  # champion
    mean_y: float = 0.0  # shadow
    m2_x: float = 0.0  # sum of squared deviations from mean_x
    m2_y: float = 0.0
    c_xy: float = 0.0  # sum of products of deviations
    sum_abs_diff: float = 0.0
    agree: int = 0
    flips: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        champion_scores: pa.Array,
        shadow_scores: pa.Array,
        champion_actions: pa.Array,
        shadow_actions: pa.Array,
    ) -> ComparisonPartial:
        """The partial of one batch; the four arrays are aligned row by row."""
        arrays = (champion_scores, shadow_scores, champion_actions, shadow_actions)
        if len({len(a) for a in arrays}) > 1:
            raise ValueError(
                "champion scores, shadow scores, champion actions and shadow actions differ in "
                f"length: {[len(a) for a in arrays]}"
            )
        x, y = float_values(champion_scores), float_values(shadow_scores)
        both = np.isfinite(x) & np.isfinite(y)
        x, y = x[both], y[both]
        mean_x, mean_y = _shifted_mean(x), _shifted_mean(y)
        dx, dy = x - mean_x, y - mean_y
        champion = pc.cast(champion_actions, pa.string())
        shadow = pc.cast(shadow_actions, pa.string())
        return cls(
            rows=len(champion_scores),
            both_scored=len(x),
            mean_x=mean_x,
            mean_y=mean_y,
            m2_x=float(dx @ dx),
            m2_y=float(dy @ dy),
            c_xy=float(dx @ dy),
            sum_abs_diff=float(np.abs(x - y).sum()),
            agree=int(pc.sum(pc.equal(champion, shadow)).as_py() or 0),
            flips=_flip_counts(champion, shadow),
        )

    def merge(self, other: ComparisonPartial) -> ComparisonPartial:
        """Both partials' rows as one partial (a new object; neither input changes)."""
        return ComparisonPartial(
            self.rows + other.rows,
            self.both_scored + other.both_scored,
            *_merged_moments(self, other),
            sum_abs_diff=self.sum_abs_diff + other.sum_abs_diff,
            agree=self.agree + other.agree,
            flips=dict(Counter(self.flips) + Counter(other.flips)),
        )


def _shifted_mean(values: np.ndarray) -> float:
    """The mean, computed from the first value so that constant data gives it EXACTLY.

    Zero variance then comes out as exactly 0 (not 1e-33), and correlation says None.
    """
    if len(values) == 0:
        return 0.0
    return float(values[0] + (values - values[0]).mean())


def _flip_counts(champion: pa.Array, shadow: pa.Array) -> dict[tuple[str, str], int]:
    pairs = pa.table({"c": champion.fill_null(NONE), "s": shadow.fill_null(NONE)})
    counts = pairs.group_by(["c", "s"]).aggregate([([], "count_all")])
    keys = zip(counts["c"].to_pylist(), counts["s"].to_pylist(), strict=True)
    return dict(zip(keys, counts["count_all"].to_pylist(), strict=True))


Moments = tuple[float, float, float, float, float]  # mean_x, mean_y, m2_x, m2_y, c_xy


def _merged_moments(a: ComparisonPartial, b: ComparisonPartial) -> Moments:
    """Chan et al.: the union's means and co-moments from each side's.

    An empty ``a`` passes ``b`` through untouched: ``0 + mean * n / n`` can be one ulp off,
    which would make up a variance for a constant column. An empty ``b`` changes nothing.
    """
    if not a.both_scored:
        return b.mean_x, b.mean_y, b.m2_x, b.m2_y, b.c_xy
    n = a.both_scored + b.both_scored
    dx, dy = b.mean_x - a.mean_x, b.mean_y - a.mean_y
    cross = a.both_scored * b.both_scored / n
    return (
        a.mean_x + dx * b.both_scored / n,
        a.mean_y + dy * b.both_scored / n,
        a.m2_x + b.m2_x + dx * dx * cross,
        a.m2_y + b.m2_y + dy * dy * cross,
        a.c_xy + b.c_xy + dx * dy * cross,
    )


@dataclass(frozen=True)
class ComparisonSummary:
    """What a run reports for champion vs one shadow; None where a statistic is undefined."""

    rows: int
    compared: int  # rows with both scores, which correlation and mean_abs_diff cover
    agreement: float | None  # share of all rows whose two actions are present and equal
    correlation: float | None  # Pearson; None when < 2 compared rows or a constant side
    mean_abs_diff: float | None
    flips: dict[str, dict[str, int]]  # champion action -> shadow action -> rows

    def to_dict(self) -> dict[str, object]:
        """Stable keys for the manifest and the MLflow run record (JSON-friendly): the fields."""
        return asdict(self)

    def metrics(self, prefix: str) -> dict[str, float]:
        """MLflow metrics ``<prefix>_agreement|_correlation|_mean_abs_diff``; None left out."""
        values = {k: getattr(self, k) for k in ("agreement", "correlation", "mean_abs_diff")}
        return {f"{prefix}_{k}": v for k, v in values.items() if v is not None}

    def lines(self) -> list[str]:
        """For the run summary: the statistics, then the flip matrix (champion rows)."""
        head = [
            f"rows {self.rows}, compared {self.compared} (both scored)",
            f"agreement {_fmt(self.agreement)}, correlation {_fmt(self.correlation)}, "
            f"mean abs diff {_fmt(self.mean_abs_diff)}",
        ]
        if not self.flips:
            return [*head, "action flips: none (no rows)"]
        return [*head, "action flips (rows: champion, columns: shadow):", *_matrix(self.flips)]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _matrix(flips: dict[str, dict[str, int]]) -> list[str]:
    columns = sorted({s for row in flips.values() for s in row}, key=_order)
    cells = [
        [CORNER, *columns],
        *([c, *(str(r.get(s, 0)) for s in columns)] for c, r in flips.items()),
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns) + 1)]
    counts = list(enumerate(widths[1:], start=1))  # the label left-aligned, counts right
    return [
        f"  {row[0]:<{widths[0]}}" + "".join(f"  {row[i]:>{w}}" for i, w in counts) for row in cells
    ]


def _order(action: str) -> tuple[bool, str]:
    """Actions alphabetically, ``"<none>"`` last."""
    return action == NONE, action


def summarize(partial: ComparisonPartial) -> ComparisonSummary:
    """The summary of (usually merged) partials."""
    n = partial.both_scored
    correlation = None
    if n >= 2 and partial.m2_x > 0 and partial.m2_y > 0:
        r = partial.c_xy / math.sqrt(partial.m2_x * partial.m2_y)
        correlation = min(1.0, max(-1.0, r))  # rounding can step just outside, as in np.corrcoef
    flips: dict[str, dict[str, int]] = {}
    for (c, s), count in sorted(partial.flips.items(), key=lambda kv: tuple(map(_order, kv[0]))):
        flips.setdefault(c, {})[s] = count
    return ComparisonSummary(
        rows=partial.rows,
        compared=n,
        agreement=partial.agree / partial.rows if partial.rows else None,
        correlation=correlation,
        mean_abs_diff=partial.sum_abs_diff / n if n else None,
        flips=flips,
    )


def labels_from_scores(scores: pa.Array, threshold: float = 0.5) -> pa.Array:
    """``"positive"`` (score >= threshold) / ``"negative"``, for jobs without rules.

    A null or NaN score stays null, so the flip matrix shows it as ``"<none>"``.
    """
    values = float_values(scores)
    with np.errstate(invalid="ignore"):
        labels = np.where(values >= threshold, "positive", "negative")
    return pa.array(labels, type=pa.string(), mask=np.isnan(values))
