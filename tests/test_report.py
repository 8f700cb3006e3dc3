"""`keras-sisa report` on a small real-data run with one forget: the page, its plots, its numbers."""

import json
import re

import numpy as np
from matplotlib import image

from conftest import run_cli
from keras_sisa.report import FIGURES, pixel_size
from test_unlearning import copy_run


def test_report_shows_the_run_and_its_forget(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    sisa.forget(classes=["Sandal"], verbose=0)
    out = tmp_path / "report"
    result = run_cli("report", sisa.directory, "--out", str(out))
    assert result.returncode == 0, result.stderr

    page = (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == pngs == sorted(f for f, _ in FIGURES.values())
    for name, (file, _) in FIGURES.items():
        height, width = image.imread(out / file).shape[:2]  # decodes the whole PNG
        assert (width, height) == pixel_size(name)

    figures = json.loads((out / "report.json").read_text())
    evaluated = run_cli("evaluate", sisa.directory, "--json")
    assert figures["evaluation"] == json.loads(evaluated.stdout)
    counts = np.asarray(figures["confusion"]["counts"])
    per_class = figures["evaluation"]["per_class"]
    assert figures["confusion"]["classes"] == list(per_class)
    assert np.allclose(np.diag(counts) / counts.sum(axis=1), list(per_class.values()))

    before, after = figures["accuracy"]
    assert before["after"] == "fit" and "Sandal" in before["per_class"]
    assert after["after"] == "forget 1: Sandal" and after["per_class"] == per_class
    went = figures["forgotten_predicted_as"][0]
    assert went["classes"] == ["Sandal"] and "Sandal" not in went["predicted_as"]
    assert sum(went["predicted_as"].values()) == np.sum(small.y_test == small.class_names.index("Sandal"))
    mia = figures["mia"][0]
    assert 0 <= mia["confidence"]["auc"] <= 1 and len(mia["confidence"]["fpr"]) == 101
    assert [e["event"] for e in figures["timeline"]] == ["fit", "forget 1: Sandal"]
    assert [c["name"] for c in figures["plan"]] == [c.name for c in sisa.plan.components]
    histories = sisa.histories()
    assert set(figures["training"]) == set(histories)
    for component, slices in figures["training"].items():  # each slice's epochs, as its checkpoint keeps them
        assert [(s["slice"], len(s["loss"])) for s in slices] == [(k, h["epochs"]) for k, h in histories[component].items()]


def test_report_without_audited_forgets_and_into_an_occupied_folder(fitted, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    receipt = sisa.forget(samples=sisa.plan.experts[0].sample_ids[:3], verbose=0, audit=False)
    assert "audit" not in receipt
    figures = sisa.report(str(tmp_path / "report"))
    assert figures["mia"] == [] and [e["event"] for e in figures["timeline"]] == ["fit", "forget 1: 3 samples"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = run_cli("report", sisa.directory, "--out", str(taken))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]
