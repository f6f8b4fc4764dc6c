"""Business rules as written in the job file: ``rules: [{when: ..., action: ...}, ...,
{otherwise: ...}]`` parsed and checked at config load, so a typo is exit 2 before any data is
read (evaluating them is ``scoring.rules``).

Each ``when`` becomes an OR of ANDs of ``REF OP LITERAL`` comparisons. User text is only split
by a regex and read by the recursive-descent ``_Parser``; it never reaches an evaluator.
Choices, none of them silent:

* No ``not``: a comparison with a null or NaN is False, so ``not`` would make a missing score
  match. Write the opposite operator (``x < 0.5`` for ``not x >= 0.5``).
* Strings and booleans take only ``==``/``!=`` (alphabetical order is never a threshold).
* The last rule must be ``{otherwise: <action>}``: every row gets an action, never a null.

``check_rule_names`` then checks every name against what the job file declares (members and
their roles, the ensemble, ``output.score_column``): an unknown member, an output no model kind
has, a literal of the wrong kind, and a shadow deciding the served action are exit 2 at load.
Which outputs each member really has is known once its model is resolved
(``scoring.rules.check_rule_references``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from batch_serving.errors import ConfigError

Value = float | int | str | bool
Terms = tuple[tuple["Comparison", ...], ...]
# Each operator's function, named alike in numpy (a ufunc) and pyarrow.compute: the one table
# behind rule evaluation on Arrow (``scoring.rules``) and the ONNX parity gate on numpy.
OPERATOR_FUNCTIONS = {
    ">=": "greater_equal",
    ">": "greater",
    "<=": "less_equal",
    "<": "less",
    "==": "equal",
    "!=": "not_equal",
}
OPERATORS = tuple(OPERATOR_FUNCTIONS)
ORDERINGS = OPERATORS[:4]  # the operators that order numbers (a threshold); the rest take any kind
_FLIPPED = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "==": "==", "!=": "!="}
_KEYWORDS = ("and", "or", "not", "true", "false")
_ACTION = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_TERMS = 64  # and-terms once parentheses are expanded; beyond that nobody can review it
_TOKEN = re.compile(
    r"""\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
    |(?P<string>"[^"]*"|'[^']*')
    |(?P<op>[<>=!]+)
    |(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    |(?P<paren>[()])
    |(?P<other>\S[^\s()<>=!]*))""",
    re.VERBOSE,
)
Token = tuple[str, str, int]  # kind, text, position
# Every output a model of any kind can have, but the binary score (named by output.score_column),
# with the literal kind it compares with (None: not comparable). The names are those of
# models.adapters.base (PROBABILITIES, PREDICTED_LABEL, PREDICTION); config sits below models.
OUTPUT_KINDS: dict[str, str | None] = {
    "prediction": "number",
    "predicted_label": "string",
    "probabilities": None,
}
ENSEMBLE, ENSEMBLE_SCORE = "ensemble", "ensemble.score"  # a reserved member key, its output


@dataclass(frozen=True)
class Comparison:
    """``ref op value``; the column is always on the left (literal-first text is flipped)."""

    ref: str
    op: str
    value: Value
    at: int = field(default=-1, compare=False)  # the ref's character offset in its ``when``

    def __str__(self) -> str:
        return f"{self.ref} {self.op} {_literal(self.value)}"


@dataclass(frozen=True)
class Rule:
    """An action and its condition as an OR of ANDs; an empty ``any_of`` is the otherwise."""

    action: str
    any_of: Terms
    when: str = field(default="", compare=False)  # the text as written, for messages


@dataclass(frozen=True)
class Rules:
    """Rules in order, the last one the otherwise; ``where`` prefixes every message.
    Parsed and checked at config load; ``scoring.rules.RuleSet`` evaluates them."""

    rules: tuple[Rule, ...]
    where: str = "rules"

    def __post_init__(self) -> None:
        for i, rule in enumerate(self.rules[:-1]):
            if not rule.any_of:
                raise ConfigError(
                    f"{self.where}[{i}].otherwise: must be the last rule; "
                    f"the {len(self.rules) - 1 - i} rule(s) after it could never match"
                )
        if self.rules and self.rules[-1].any_of:
            raise ConfigError(
                f"{self.where} must end with {{otherwise: <action>}} so that every row gets an "
                f"action; rule {len(self.rules) - 1} (the last, action "
                f"{self.rules[-1].action!r}) has a 'when'"
            )

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(sorted({c.ref for _, c in self._comparisons()}))

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rule.action for rule in self.rules))

    @property
    def thresholds(self) -> dict[str, tuple[float, ...]]:
        """Numeric constants per ref, sorted: what a parity check must agree on at the edges."""
        found: dict[str, set[float]] = {}
        for _, c in self._comparisons():
            if _kind_of(c.value) == "number":
                found.setdefault(c.ref, set()).add(float(c.value))
        return {ref: tuple(sorted(values)) for ref, values in sorted(found.items())}

    def describe(self) -> list[str]:
        """One line per rule (the condition as its OR of ANDs), for manifests and logs."""
        return [
            f"{self.where}[{i}]: when {_format(rule.any_of)} -> {rule.action}"
            if rule.any_of
            else f"{self.where}[{i}]: otherwise -> {rule.action}"
            for i, rule in enumerate(self.rules)
        ]

    def _comparisons(self) -> Iterator[tuple[int, Comparison]]:
        for i, rule in enumerate(self.rules):
            for term in rule.any_of:
                yield from ((i, c) for c in term)

    def located(self, i: int, c: Comparison, message: str, hint: str = "") -> str:
        """``rules[i].when: <message> at position N in "<when>"; <hint>``: the parser's format."""
        text = self.rules[i].when
        at = f' at position {c.at} in "{text}"' if c.at >= 0 and text else f" in '{c}'"
        return f"{self.where}[{i}].when: {message}{at}{'; ' + hint if hint else ''}"


def check_rule_names(
    rules: Rules, roles: Mapping[str, str], *, ensemble: bool, score_column: str = "score"
) -> None:
    """Every name the rules read, against what the job file declares, at config load: the
    member exists and is not a shadow (the rules decide the served action), the output is one
    some model kind has, the literal has that output's kind. ``roles``: member key (champion
    included) -> ``champion``/``member``/``shadow``. ConfigError naming rule, name, position."""
    outputs = {**OUTPUT_KINDS, score_column: "number"}
    served = {score_column: "number"} if ensemble else outputs
    names = _Names(roles, ensemble, outputs, served)
    for i, c in rules._comparisons():
        problem, hint, kind = names.kind_of(c.ref)
        if problem:
            raise ConfigError(rules.located(i, c, problem, hint))
        if kind is None:
            member = c.ref.rsplit(".", 1)[0] + "." if "." in c.ref else ""
            problem = f"{c.ref!r} is a map of class probabilities, not comparable"
            hint = f"compare {member}predicted_label or a binary score"
            raise ConfigError(rules.located(i, c, problem, hint))
        if kind != _kind_of(c.value):
            given = f"{_kind_of(c.value)} {_literal(c.value)}"
            raise ConfigError(rules.located(i, c, f"{c.ref!r} is a {kind}, compared with {given}"))


@dataclass(frozen=True)
class _Names:
    """What a rule may read, as far as the job file tells: served columns, ``<member>.<output>``
    of the non-shadow members, ``ensemble.score``; each with its literal kind."""

    roles: Mapping[str, str]
    ensemble: bool
    outputs: Mapping[str, str | None]
    served: Mapping[str, str | None]

    def kind_of(self, ref: str) -> tuple[str, str, str | None]:
        """(problem, hint, kind): an empty problem means ``ref`` can exist, with that kind."""
        if ref == "action":
            return "rules cannot read 'action'", "it is what they compute", None
        if "." not in ref:
            if ref in self.served:
                return "", "", self.served[ref]
            return f"unknown column {ref!r}", self._suggest(ref) + self._readable(), None
        key, name = ref.split(".", 1)
        if key == ENSEMBLE:
            return self._ensemble(ref)
        if key not in self.roles:
            return f"unknown member {key!r} in {ref!r}", self._suggest(ref) + self._readable(), None
        if self.roles[key] == "shadow":
            return (
                f"{ref!r} reads shadow {key!r}",
                "a shadow never changes what is served, and the rules decide the served action "
                f"(the struct {key!r} already carries the action they would give with it in the "
                "champion's place)",
                None,
            )
        if name not in self.outputs:
            return (
                f"unknown output {name!r} of member {key!r}",
                self._suggest(ref) + f"a model outputs one of {sorted(self.outputs)} by its kind",
                None,
            )
        return "", "", self.outputs[name]

    def _ensemble(self, ref: str) -> tuple[str, str, str | None]:
        if not self.ensemble:
            return f"{ref!r} without an ensemble", "the job has no `ensemble:` section", None
        if ref != ENSEMBLE_SCORE:
            return f"unknown column {ref!r}", f"the ensemble outputs only {ENSEMBLE_SCORE}", None
        return "", "", "number"

    def _readable(self) -> str:
        """What rules read, for a message about a name that is none of it."""
        members = sorted(k for k, role in self.roles.items() if role != "shadow")
        shadows = sorted(k for k, role in self.roles.items() if role == "shadow")
        return (
            f"rules read the served columns {sorted(self.served)}"
            + ("" if self.ensemble else " (by the champion's kind)")
            + f", <member>.<output> of members {members}"
            + (f" (not shadows {shadows})" if shadows else "")
            + (f" or {ENSEMBLE_SCORE}" if self.ensemble else "")
            + "; input columns feed models, not rules"
        )

    def _suggest(self, ref: str) -> str:
        known = [*self.served, ENSEMBLE_SCORE] if self.ensemble else list(self.served)
        known += [
            f"{k}.{o}" for k, role in self.roles.items() if role != "shadow" for o in self.outputs
        ]
        close = difflib.get_close_matches(ref, known, n=1)
        return f"did you mean {close[0]!r}? " if close else ""


def parse_rules(raw: Sequence[Mapping[str, object]], where: str = "rules") -> Rules:
    """The YAML ``rules:`` list as a RuleSet; any mistake is a ConfigError naming rule and key."""
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise ConfigError(f"{where}: expected a list of rules, got {type(raw).__name__}")
    return Rules(tuple(_parse_rule(item, f"{where}[{i}]") for i, item in enumerate(raw)), where)


def _parse_rule(item: object, where: str) -> Rule:
    shape = "a rule is {when: <condition>, action: <action>} or {otherwise: <action>}"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}; {shape}")
    keys = [str(key) for key in item]
    unknown = [key for key in keys if key not in ("when", "action", "otherwise")]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; {shape}")
    if "otherwise" in item:
        if len(keys) > 1:
            other = next(key for key in keys if key != "otherwise")
            raise ConfigError(f"{where}: has both 'otherwise' and {other!r}; {shape}")
        return Rule(_action(item["otherwise"], f"{where}.otherwise"), ())
    for key in ("when", "action"):
        if key not in item:
            raise ConfigError(f"{where}: missing key {key!r}; {shape}")
    when = item["when"]
    if not isinstance(when, str) or not when.strip():
        raise ConfigError(f"{where}.when: expected a non-empty string, got {when!r}")
    terms = _Parser(when, f"{where}.when").parse()
    return Rule(_action(item["action"], f"{where}.action"), terms, when)


def _action(value: object, where: str) -> str:
    if not isinstance(value, str) or not _ACTION.fullmatch(value):
        raise ConfigError(
            f"{where}: expected an action name of letters, digits, '_', '.' or '-', got {value!r}"
        )
    return value


class _Parser:
    """Recursive descent over one ``when``: or_expr := and_expr ('or' and_expr)*,
    and_expr := atom ('and' atom)*, atom := '(' or_expr ')' | operand OP operand.
    Each level returns its OR of ANDs directly, so 'and' binds tighter than 'or'."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where, self.i = text, where, 0
        self.tokens = [_token(m) for m in _TOKEN.finditer(text)] + [("end", "", len(text))]

    def parse(self) -> Terms:
        terms = self.disjunction()
        kind, text, pos = self.tokens[self.i]
        if kind != "end":
            self.fail(f"unexpected {text!r}, expected 'and', 'or' or the end", pos)
        return terms

    def disjunction(self) -> Terms:
        terms = self.conjunction()
        while self.tokens[self.i][0] == "or":
            self.i += 1
            terms += self.conjunction()
        return terms

    def conjunction(self) -> Terms:
        terms = self.atom()
        while self.tokens[self.i][0] == "and":
            pos = self.tokens[self.i][2]
            self.i += 1
            right = self.atom()
            terms = tuple(a + b for a in terms for b in right)
            if len(terms) > _MAX_TERMS:
                self.fail(f"condition expands to more than {_MAX_TERMS} and-terms", pos)
        return terms

    def atom(self) -> Terms:
        kind, text, pos = self.next()
        if kind == "(":
            terms = self.disjunction()
            end_kind, end_text, end_pos = self.next()
            if end_kind != ")":
                got = _shown(end_kind, end_text)
                self.fail(f"expected ')' to close the '(' at position {pos}, got {got}", end_pos)
            return terms
        if kind == "not":
            self.fail("'not' is not supported; write the opposite operator (< for not >=)", pos)
        left_is_ref, left = self.operand((kind, text, pos))
        op_kind, op, op_pos = self.next()
        right_pos = self.tokens[self.i][2]
        if op_kind != "op":
            self.fail(f"expected an operator after {text!r}, got {_shown(op_kind, op)}", op_pos)
        if op not in OPERATORS:
            self.fail(f"unknown operator {op!r}", op_pos, "; use one of " + ", ".join(OPERATORS))
        right_is_ref, right = self.operand(self.next())
        if left_is_ref == right_is_ref:
            both = "columns" if left_is_ref else "literals"
            self.fail(f"compare a column with a literal, not two {both}", pos)
        ref, op, value = (left, op, right) if left_is_ref else (right, _FLIPPED[op], left)
        if op in ORDERINGS and _kind_of(value) != "number":
            self.fail(f"{op!r} orders numbers; a {_kind_of(value)} takes == or !=", op_pos)
        return ((Comparison(str(ref), op, value, pos if left_is_ref else right_pos),),)

    def operand(self, token: Token) -> tuple[bool, Value]:
        """(True, name) for a column, (False, value) for a literal."""
        kind, text, pos = token
        if kind == "name":
            return True, text
        if kind == "number":
            return False, int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
        if kind in ("true", "false"):
            return False, kind == "true"
        if kind == "string":
            return False, text[1:-1]
        self.fail(f"expected a column or a literal, got {_shown(kind, text)}", pos)

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += token[0] != "end"
        return token

    def fail(self, message: str, pos: int, hint: str = "") -> NoReturn:
        raise ConfigError(f'{self.where}: {message} at position {pos} in "{self.text}"{hint}')


def _token(match: re.Match[str]) -> Token:
    group = match.lastgroup or "other"
    text = match.group(group)
    kind = text if group == "paren" else group
    if group == "name" and text.lower() in _KEYWORDS:
        kind = text.lower()
    return kind, text, match.start(group)


def _shown(kind: str, text: str) -> str:
    return "the end" if kind == "end" else repr(text)


def _kind_of(value: Value) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _literal(value: Value) -> str:
    """The literal as the grammar writes it, so a described rule parses back to itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if '"' in value else f'"{value}"'
    return repr(value)


def _format(any_of: Terms) -> str:
    def conjunction(term: tuple[Comparison, ...]) -> str:
        text = " and ".join(str(c) for c in term)
        return f"({text})" if len(term) > 1 and len(any_of) > 1 else text

    return " or ".join(conjunction(term) for term in any_of)
