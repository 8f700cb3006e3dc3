"""The benchmarks' JSON result files: stamped with the benchmark, the machine and the date."""

from __future__ import annotations

import json
import os
import platform
import time


def stamp(benchmark: str) -> dict:
    """The fields every result file starts with, so a figure always names where it was measured."""
    return {"benchmark": benchmark,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "date": time.strftime("%Y-%m-%d")}


def write(path: str, result: dict) -> None:
    """Writes `result` to `path` as indented JSON, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
