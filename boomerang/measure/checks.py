"""One row type for every claim the project checks: a statement, the measured value, the rule it must
meet, whether it holds, computed from the value (never typed in), and where a claim that does not hold
fails, read off the same data."""
from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

CLAIM_COLUMNS = ["figure", "claim", "scope", "value", "rule", "holds", "where it fails"]
NOT_RUN = "not run"
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Claim:
    """`rule` is "<op> <threshold>"; `value` None when the runs it needs are missing. `scope` says what it
    is about (a patch order, a model, a pair, or "all"); `figure` the paper figure or table it reproduces;
    `detail` where the measurement falls short of the rule (shown only when it does not hold)."""

    claim: str
    value: float | None
    rule: str
    scope: str = "all"
    figure: str = ""
    detail: str = ""

    def __post_init__(self):
        op, threshold = self.rule.split()
        if op not in _OPS:
            raise ValueError(f"rule {self.rule!r}: the operator must be one of {sorted(_OPS)}")
        float(threshold)

    @property
    def holds(self) -> bool | str:
        if self.value is None:
            return NOT_RUN
        op, threshold = self.rule.split()
        return bool(_OPS[op](self.value, float(threshold)))


def claims_frame(claims: Iterable[Claim]) -> pd.DataFrame:
    rows = [{"figure": c.figure, "claim": c.claim, "scope": c.scope, "value": c.value, "rule": c.rule,
             "holds": c.holds, "where it fails": c.detail if c.holds is False else ""} for c in claims]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
