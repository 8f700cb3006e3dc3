"""The README's benchmark table is the one the benchmarks' JSON files in results/ make."""

import contextlib
import io
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_readme_benchmark_table_is_printed_from_the_results(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["readme_table.py", "--results", os.path.join(ROOT, "results")])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(os.path.join(ROOT, "examples", "readme_table.py"), run_name="__main__")
    table = printed.getvalue().strip()
    assert table.count("\n") >= 10
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        assert table in readme.read()
