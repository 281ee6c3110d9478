"""One benchmark figure, and the table / JSON they are reported as."""

from __future__ import annotations

import json
import platform as pyplatform
import os
from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    name: str                   # what is measured
    value: float | None         # the figure (a ratio unless unit says otherwise)
    unit: str                   # "x raw", "x in-process", "x 1 thread", "us", ...
    target: str = ""            # ">= 0.95", "" when informational
    passed: bool | None = None  # None when there is no target
    note: str = ""              # one line: the baseline and the absolute rates
    detail: dict = field(default_factory=dict)

    @classmethod
    def ratio(cls, name: str, value: float, unit: str, minimum: float | None, note: str = "", **detail) -> "Figure":
        target = f">= {minimum:g}" if minimum is not None else ""
        passed = None if minimum is None else value >= minimum
        return cls(name, value, unit, target, passed, note, detail)

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "FAIL")


def format_value(f: Figure) -> str:
    if f.value is None:
        return "n/a"
    if f.unit == "ratio":
        return f"{f.value:.4f}"
    if f.unit.startswith("x"):
        return f"{f.value:.3f} {f.unit}"
    if f.value < 10:
        return f"{f.value:.2f} {f.unit}"
    return f"{f.value:,.1f} {f.unit}" if f.value < 1000 else f"{f.value:,.0f} {f.unit}"


def table(figures: list[Figure]) -> str:
    rows = [("benchmark", "figure", "target", "", "baseline / absolute")]
    rows += [(f.name, format_value(f), f.target or "-", f.verdict, f.note) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 19)
    return "\n".join(lines)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": pyplatform.python_version(), "machine": pyplatform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def write_json(path, figures: list[Figure], info: dict) -> None:
    with open(path, "w") as f:
        json.dump({"machine": info, "figures": [asdict(x) | {"verdict": x.verdict} for x in figures]}, f, indent=2)
        f.write("\n")
