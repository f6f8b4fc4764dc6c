"""Business rules (issue #11): score columns in, one action per row out; first match wins.

``rules: [{when: "ensemble.score >= 0.85", action: block}, ..., {otherwise: allow}]`` is parsed
at config load (``parse_rules``), so a typo is exit 2 before any data is read. Each ``when``
becomes an OR of ANDs of ``REF OP LITERAL`` comparisons; a batch is then a few Arrow comparisons
and one numpy ``argmax``, never a loop over rows. User text is only split by a regex and read by
the recursive-descent ``_Parser``; it never reaches an evaluator. Choices, none of them silent:

* A comparison with a null or NaN operand is False (``!=`` too): a missing score never triggers
  an action by itself, it falls through to the ``otherwise``.
* No ``not``: under "null is False" it would make a missing score match. Write the opposite
  operator (``x < 0.5`` for ``not x >= 0.5``).
* Strings and booleans take only ``==``/``!=`` (alphabetical order is never a threshold), and
  ``check_rule_references`` rejects a literal whose kind differs from its column's.
* The last rule must be ``{otherwise: <action>}``: every row gets an action, never a null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.rules import (
    OPERATOR_FUNCTIONS,
    OPERATORS,
    Comparison,
    Rule,
    Rules,
    Terms,
    Value,
    _kind_of,
    _literal,
)
from batch_serving.config.rules import parse_rules as _parse
from batch_serving.errors import ConfigError

__all__ = [
    "OPERATORS",
    "Comparison",
    "Rule",
    "RuleSet",
    "Value",
    "check_rule_references",
    "parse_rules",
]

Columns = Mapping[str, pa.Array | pa.ChunkedArray]


class RuleSet(Rules):
    """Parsed rules that can be checked against a schema and evaluated on Arrow columns."""

    def check_refs(self, available: Mapping[str, pa.DataType]) -> None:
        """Every ref exists and has the literal's kind; run it once per input schema."""
        check_rule_references(self, available)

    def evaluate(self, columns: Columns, *, num_rows: int | None = None) -> pa.Array:
        """One action per row (a string array, never null); ``num_rows`` when no columns."""
        if not self.rules:
            raise ConfigError(f"{self.where}: no rules, so no row gets an action")
        self.check_refs({name: column.type for name, column in columns.items()})
        if num_rows is None:
            if not columns:
                raise ValueError("evaluate needs at least one column or num_rows")
            num_rows = len(next(iter(columns.values())))
        masks = [_matches(rule.any_of, columns, num_rows) for rule in self.rules[:-1]]
        first = np.argmax(np.vstack([*masks, np.ones(num_rows, dtype=bool)]), axis=0)
        actions = pa.array([rule.action for rule in self.rules], pa.string())
        return pc.take(actions, pa.array(first, pa.int64()))


def check_rule_references(
    rules: Rules, available: Mapping[str, pa.DataType], inputs: Iterable[str] = ()
) -> None:
    """Every name the rules read is in ``available`` with the kind of its literal; ConfigError
    naming the rule, the name and its position in the ``when``. No Spark, no data: a run calls
    it once the models are resolved, before any session starts.

    ``available`` is what rules read, each with its Arrow type: ``<member>.<output>`` of every
    member, ``ensemble.score``, the served columns (``scoring.members.namespace_types(plan)``).
    ``inputs`` (the input table's columns) only explains a miss: rules never read them."""
    columns = set(inputs)
    for i, c in rules._comparisons():
        if c.ref not in available:
            hint = f"available: {sorted(available)}"
            if c.ref in columns:
                hint = f"{c.ref!r} is an input column, and rules read model outputs; {hint}"
            raise ConfigError(rules.located(i, c, f"unknown column {c.ref!r}", hint))
        dtype, kind = available[c.ref], _kind_of(c.value)
        if _kind_of_type(dtype) != kind:
            problem = f"column {c.ref!r} is {dtype} but is compared with {kind} {_literal(c.value)}"
            raise ConfigError(rules.located(i, c, problem))


def parse_rules(raw: Sequence[Mapping[str, object]], where: str = "rules") -> RuleSet:
    """The YAML ``rules:`` list as a RuleSet; any mistake is a ConfigError naming rule and key."""
    parsed = _parse(raw, where)
    return RuleSet(parsed.rules, parsed.where)


def _kind_of_type(dtype: pa.DataType) -> str | None:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return "boolean" if pa.types.is_boolean(dtype) else None


def _matches(any_of: Terms, columns: Columns, num_rows: int) -> np.ndarray:
    """Rows where the OR of ANDs holds, as a numpy bool mask."""
    mask = np.zeros(num_rows, dtype=bool)
    for term in any_of:
        mask |= np.logical_and.reduce([_compare(columns[c.ref], c) for c in term])
    return mask


def _compare(column: pa.Array | pa.ChunkedArray, c: Comparison) -> np.ndarray:
    """One comparison over a whole column; null and NaN operands give False, even for !=."""
    result = pc.call_function(OPERATOR_FUNCTIONS[c.op], [column, pa.scalar(c.value)])
    if pa.types.is_floating(column.type):
        result = pc.and_kleene(result, pc.invert(pc.is_nan(column)))
    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), dtype=bool)
