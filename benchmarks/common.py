"""What every benchmark shares: a figure row with a goal checked by code, a timer, a table.

A figure is measured in the same process run as its reference (its `baseline`), so what is
reported is a ratio that the machine's load and clock move less than either number alone:
MFU is achieved model FLOP/s over the measured matmul peak, a speedup is tokens/s over the
reference implementation's tokens/s.

Goals are strings that `met` is computed from, never typed in:
  ">= 2.0x"     the ratio value/baseline is at least 2
  ">= 60% MFU"  the ratio, in percent, is at least 60 (any words after the % are a label)
  "<= 6 s"      the value itself, in the figure's unit (here s), is at most 6
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

_GOAL = re.compile(r"^\s*(>=|<=|>|<|≥|≤)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(.*?)\s*$")
_OPS = {
    ">=": lambda a, b: a >= b,
    "≥": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "≤": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True)
class Goal:
    """A parsed goal: `op target` on the ratio ("x"), the ratio in percent ("%"), or the value."""

    op: str
    target: float
    on: str  # "ratio" | "percent" | "value"
    unit: str  # the figure unit a "value" goal is stated in; "" otherwise

    @classmethod
    def parse(cls, text: str) -> Goal:
        m = _GOAL.match(text)
        if m is None:
            raise ValueError(f"goal {text!r}: expected '<op> <number><unit>', e.g. '>= 2.0x'")
        op, number, rest = m.group(1), float(m.group(2)), m.group(3)
        if rest == "x" or rest.startswith("x "):
            return cls(op, number, "ratio", "")
        if rest.startswith("%"):
            return cls(op, number, "percent", "")
        if not rest:
            raise ValueError(f"goal {text!r}: no unit (x, %, or the figure's unit)")
        return cls(op, number, "value", rest)

    def check(self, value: float, ratio: float | None, unit: str) -> bool | None:
        """True/False when the goal can be decided; None when the figure has no number."""
        if self.on == "value":
            if self.unit != unit:
                raise ValueError(f"goal in {self.unit!r} on a figure in {unit!r}")
            x = value
        else:
            if ratio is None:
                return None
            x = ratio * 100.0 if self.on == "percent" else ratio
        if x is None or not math.isfinite(x):
            return None
        return bool(_OPS[self.op](x, self.target))


@dataclass
class Figure:
    """One row: `value` `unit`, measured against `baseline` (same unit) in the same run.

    `met` is computed from `goal` when the figure is built; passing a `met` that disagrees
    with the computation is an error (so a row copied with dataclasses.replace stays valid).
    A value of NaN means "not measured" (e.g. bf16 on a CPU without it): met is None.
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    goal: str | None = None
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        computed = None
        if self.goal is not None:
            computed = Goal.parse(self.goal).check(self.value, self.ratio, self.unit)
        if self.met is not None and self.met != computed:
            raise ValueError(f"{self.name}: met={self.met} given, the goal says {computed}")
        self.met = computed

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not math.isfinite(self.value):
            return None
        if self.baseline == 0 or not math.isfinite(self.baseline):
            return None
        return self.value / self.baseline

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


# PLUMBING: timing


def timeit(fn: Callable[[], object], *, warmup: int, min_time: float, min_reps: int) -> float:
    """Median seconds per call of fn(), after `warmup` untimed calls; at least `min_reps`
    timed calls and at least `min_time` seconds of them (the median resists the outliers a
    shared machine produces)."""
    return timeit_many({"fn": fn}, warmup=warmup, min_time=min_time, min_reps=min_reps)["fn"]


def timeit_many(
    fns: dict[str, Callable[[], object]], *, warmup: int, min_time: float, min_reps: int
) -> dict[str, float]:
    """Median seconds per call of each fn, timed round-robin (a, b, a, b, ...) so that a
    change of the machine's load during the measurement falls on every fn alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    while True:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        reps = len(next(iter(times.values())))
        if reps >= min_reps and time.perf_counter() - start >= min_time:
            break
    return {k: statistics.median(v) for k, v in times.items()}


# PLUMBING: table


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "n/a"
    if x == 0 or 0.01 <= abs(x) < 1e6:
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    return f"{x:.3g}"


def _ratio(f: Figure) -> str:
    r = f.ratio
    if r is None:
        return "-"
    if f.goal is not None and Goal.parse(f.goal).on == "percent":
        return f"{100 * r:.1f}%"
    return f"{r:.2f}x"


def format_table(figures: Iterable[Figure]) -> str:
    """name | value unit | baseline | ratio | goal | met, aligned; notes numbered below."""
    figures = list(figures)
    header = ("name", "value", "baseline", "ratio", "goal", "met")
    rows, notes = [], []
    for f in figures:
        name = f.name
        if f.note:
            notes.append(f.note)
            name = f"{name} [{len(notes)}]"
        base = _num(f.baseline)
        if f.baseline is not None and f.baseline_name:
            base = f"{base} ({f.baseline_name})"
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append((name, f"{_num(f.value)} {f.unit}", base, _ratio(f), f.goal or "-", met))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(out)
