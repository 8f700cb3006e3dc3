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
            "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), else what `platform` knows of it."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown"


def write(path: str, result: dict) -> None:
    """Writes `result` to `path` as indented JSON, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
