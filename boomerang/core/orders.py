"""The orders in which teacher blocks are patched back into the student: two fixed by the layout, and
KLPatch's, chosen on calibration text (`measure.search`). The config's choices are these."""
from __future__ import annotations

from typing import Literal, get_args

Order = Literal["last_to_first", "first_to_last", "klpatch"]
ORDERS: tuple[str, ...] = get_args(Order)
FIXED_ORDERS = ("last_to_first", "first_to_last")
