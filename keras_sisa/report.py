"""`keras-sisa report`: what the model knows and what it forgot, as an HTML page of PNG plots.

The figures come from the run as it is now (accuracy, confusion matrix, plan) and from
what the fit and every audited forget recorded when they ran (accuracy then, where the
forgotten test images went, membership-inference ROC curves, timings): the deleted
images themselves are gone. `report.json` holds every figure's numbers.
"""

from __future__ import annotations

import html
import json
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from keras_sisa import audit, metrics
from keras_sisa.run import Run
from keras_sisa.store import build_directory, dumps

DPI = 100
# Each figure's file and size in inches; at DPI, the PNG's size in pixels.
FIGURES = {
    "accuracy": ("accuracy.png", (10.0, 4.0)),
    "confusion": ("confusion.png", (6.5, 5.5)),
    "forgotten": ("forgotten.png", (8.0, 3.5)),
    "mia": ("mia.png", (5.5, 5.0)),
    "timeline": ("timeline.png", (9.0, 3.5)),
    "plan": ("plan.png", (10.0, 3.5)),
    "training": ("training.png", (10.0, 4.0)),
}
CAPTIONS = {
    "accuracy": "Per-class test accuracy after the fit and after each forget.",
    "confusion": "Confusion matrix now, on the test images of retained classes.",
    "forgotten": "Where each forgotten class's test images are predicted now.",
    "mia": "Membership inference on each forgotten set: deleted training images against unseen "
           "test images, scored by top probability (solid) and negative entropy (dashed). "
           "An AUC near 0.5 means the model cannot tell them apart.",
    "timeline": "Each fit and forget, with its wall time against the full fit.",
    "plan": "The plan: components, their slices in training order (coloured by class), checkpoint sizes.",
    "training": "Training curves of each component's current checkpoints, slice after slice: training loss "
                "(solid) and held-out loss (dashed) per round; dots mark where a slice begins.",
}


def pixel_size(name: str) -> tuple[int, int]:
    """(width, height) in pixels of figure `name`'s PNG."""
    width, height = FIGURES[name][1]
    return round(width * DPI), round(height * DPI)


def report(run: Run, directory: str) -> dict:
    """Writes `report.html`, one PNG per figure and `report.json` to the new `directory`."""
    figures = figure_data(run)
    return build_directory(directory, lambda scratch: _write(figures, scratch))


def figure_data(run: Run) -> dict:
    """The numbers behind every figure, from the run and the receipts."""
    test = run.test_data()
    names = run.class_names
    receipts = run.receipts()
    audited = [r for r in receipts if r.get("audit")]
    history = [{"after": "fit", "per_class": (run.manifest.fit_evaluation or {}).get("per_class", {})}]
    history += [{"after": _label(r), "per_class": (r["audit"]["evaluation"] or {}).get("per_class", {})}
                for r in audited]
    evaluation = confusion = None
    if test is not None:  # one prediction serves both, as `evaluate` would make it
        probabilities = run.predict(test["x"])
        evaluation = audit.with_routing(run, metrics.accuracy_report(probabilities, test["y"], run.classes, names),
                                        test["x"], test["y"])
        confusion = {"classes": [names[c] for c in run.classes],
                     "counts": metrics.confusion_matrix(probabilities, test["y"], run.classes)}
    return {
        "run": run.directory,
        "evaluation": evaluation,
        "class_names": names,
        "forgotten": [names[c] for c in run.manifest.forgotten],
        "accuracy": history,
        "confusion": confusion,
        "forgotten_predicted_as": [{"receipt": r["id"], "classes": r["classes"],
                                    "predicted_as": r["audit"]["forgotten_predicted_as"]}
                                   for r in audited if r["audit"]["forgotten_predicted_as"]],
        "mia": [{"receipt": r["id"], "label": _label(r), **r["audit"]["mia"]} for r in audited if r["audit"]["mia"]],
        "timeline": [{"event": "fit", "time": run.manifest.created, "seconds": run.manifest.fit_seconds,
                      "rewound": {}}]
                    + [{"event": _label(r), "time": r["time"], "seconds": r["seconds"]["total"],
                        "rewound": r["rewound"]} for r in receipts],
        "full_fit_seconds": run.manifest.fit_seconds,
        "plan": [{"name": c["name"], "checkpoint_bytes": c["checkpoint_bytes"],
                  "slices": [{"id": s.id, "classes": s.classes}
                             for s in run.plan.component(c["name"]).slices]}
                 for c in run.components_info()],
        "training": {component: [{"slice": slice_id, "loss": h.get("loss", []), "val_loss": h.get("val_loss", [])}
                                 for slice_id, h in slices.items()]
                     for component, slices in run.histories().items()},
        "figures": {name: {"file": FIGURES[name][0], "pixels": pixel_size(name)} for name in FIGURES},
    }


def _label(receipt: dict) -> str:
    what = ", ".join(receipt["classes"]) or f"{receipt['deleted_count']} samples"
    return f"forget {receipt['id']}: {what}"


def _write(figures: dict, out: str) -> dict:
    # Class names are text, not mathtext: "$5 shirts" must not parse as a formula.
    with matplotlib.rc_context({"text.parse_math": False}):
        for name, draw in DRAWINGS.items():
            figure = Figure(figsize=FIGURES[name][1], dpi=DPI)  # drawn off-screen, no pyplot state
            draw(figure.add_subplot(), figures)
            figure.tight_layout()
            figure.savefig(os.path.join(out, FIGURES[name][0]), dpi=DPI)
    with open(os.path.join(out, "report.json"), "w") as f:
        f.write(dumps(figures))
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(_html(figures))
    return figures


def _accuracy(axes, data: dict) -> None:
    history, names = data["accuracy"], data["class_names"]
    width = 0.8 / max(len(history), 1)
    for k, entry in enumerate(history):
        values = [100 * entry["per_class"].get(n, np.nan) for n in names]
        axes.bar(np.arange(len(names)) + (k - (len(history) - 1) / 2) * width, values, width, label=entry["after"])
    axes.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 105)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _confusion(axes, data: dict) -> None:
    if data["confusion"] is None:
        return _empty(axes, "The run holds no test data.")
    counts, names = np.asarray(data["confusion"]["counts"]), data["confusion"]["classes"]
    axes.imshow(counts, cmap="Blues")
    for (row, column), value in np.ndenumerate(counts):
        if value:
            axes.text(column, row, str(value), ha="center", va="center", fontsize=6,
                      color="white" if value > counts.max() / 2 else "black")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")


def _forgotten(axes, data: dict) -> None:
    rows = data["forgotten_predicted_as"]
    if not rows:
        return _empty(axes, "No audited class forget yet.")
    names, colours = data["class_names"], matplotlib.colormaps["tab20"]
    for k, row in enumerate(rows):
        left, total = 0, sum(row["predicted_as"].values())
        for name, count in row["predicted_as"].items():
            axes.barh(k, 100 * count / total, left=left, color=colours(names.index(name) % 20))
            if count / total > 0.06:
                axes.text(left + 50 * count / total, k, name, ha="center", va="center", fontsize=7)
            left += 100 * count / total
    axes.set_yticks(range(len(rows)), [", ".join(r["classes"]) for r in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("share of the forgotten class's test images predicted as (%)")
    axes.set_xlim(0, 100)


def _mia(axes, data: dict) -> None:
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for k, row in enumerate(data["mia"]):
        color = f"C{k % 10}"
        for score, style in (("confidence", "-"), ("negative_entropy", "--")):
            axes.plot(row[score]["fpr"], row[score]["tpr"], style, color=color,
                      label=f"{row['label']} ({score.replace('_', ' ')} AUC {row[score]['auc']:.3f})")
    if data["mia"]:
        axes.legend(fontsize=6, loc="lower right")
    else:
        _empty(axes, "No audited forget yet.")
    axes.set_xlabel("false positive rate (unseen images)")
    axes.set_ylabel("true positive rate (deleted images)")


def _timeline(axes, data: dict) -> None:
    events = data["timeline"]
    for k, event in enumerate(events):
        seconds = event["seconds"] or 0.0
        axes.barh(k, seconds, color="C0" if k == 0 else "C1")
        rewound = ", ".join(f"{n} to {r['to_slice']}" for n, r in event["rewound"].items())
        if len(event["rewound"]) > 3:
            rewound = f"{len(event['rewound'])} components rewound"
        axes.text(seconds, k, f" {seconds:.1f} s {rewound}", va="center", fontsize=7)
    if data["full_fit_seconds"]:
        axes.axvline(data["full_fit_seconds"], color="grey", linestyle="--", linewidth=0.8)
    axes.set_yticks(range(len(events)), [f"{e['event']}\n{e['time'][:16]}" for e in events], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("wall time (s); dashed: the full fit")
    axes.set_xlim(0, 1.6 * max([e["seconds"] or 0.0 for e in events] + [1e-3]))


def _plan(axes, data: dict) -> None:
    names, components = data["class_names"], data["plan"]
    colours = matplotlib.colormaps["tab20"]
    for k, component in enumerate(components):
        for j, piece in enumerate(component["slices"]):
            axes.barh(k, 1, left=j, color=colours(piece["classes"][0] % 20), edgecolor="white")
            label = "+".join(names[c][:8] for c in piece["classes"][:2])
            axes.text(j + 0.5, k, label, ha="center", va="center", fontsize=6)
        axes.text(len(component["slices"]) + 0.1, k, f"{component['checkpoint_bytes'] / 1e6:.1f} MB",
                  va="center", fontsize=7)
    axes.set_yticks(range(len(components)), [c["name"] for c in components], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(len(c["slices"]) for c in components) + 1.5)
    axes.set_xlabel("slices in training order (coloured by class)")


def _training(axes, data: dict) -> None:
    for k, (component, slices) in enumerate(data["training"].items()):
        start = 0
        for piece in slices:
            rounds = np.arange(start, start + len(piece["loss"]))
            axes.plot(rounds, piece["loss"], color=f"C{k % 10}", linewidth=0.9,
                      label=component if piece is slices[0] else None)
            if piece["val_loss"]:
                axes.plot(rounds, piece["val_loss"], color=f"C{k % 10}", linewidth=0.9, linestyle="--")
            if len(rounds):
                axes.plot(rounds[:1], piece["loss"][:1], "o", color=f"C{k % 10}", markersize=3)
            start += len(piece["loss"])
    if not any(piece["loss"] for slices in data["training"].values() for piece in slices):
        return _empty(axes, "No slice has trained yet.")
    axes.set_xlabel("rounds of training, slice after slice")
    axes.set_ylabel("loss")
    axes.legend(fontsize=7, ncol=4)


def _empty(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


DRAWINGS = {"accuracy": _accuracy, "confusion": _confusion, "forgotten": _forgotten, "mia": _mia,
            "timeline": _timeline, "plan": _plan, "training": _training}


def _html(data: dict) -> str:
    evaluation = data["evaluation"]
    summary = (f"Test accuracy now: {100 * evaluation['accuracy']:.2f}% on {evaluation['count']} images."
               if evaluation else "The run holds no test data.")
    forgotten = ", ".join(data["forgotten"]) or "none"
    sections = "\n".join(
        f'<figure><img src="{f["file"]}" width="{f["pixels"][0]}" height="{f["pixels"][1]}" alt="{name}">'
        f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>"
        for name, f in data["figures"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>keras-sisa report: {html.escape(data['run'])}</title>
<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}}
figure{{margin:1.5em 0}}img{{max-width:100%;height:auto;border:1px solid #ddd}}
figcaption{{font-size:0.9em;color:#555}}</style></head>
<body><h1>keras-sisa report</h1>
<p>Run <code>{html.escape(data['run'])}</code>. {summary} Forgotten classes: {html.escape(forgotten)}.
Figures as numbers: <a href="report.json">report.json</a>.</p>
{sections}
<details><summary>Receipts and plan (JSON)</summary><pre>{html.escape(json.dumps(data['timeline'], indent=1))}</pre></details>
</body></html>
"""
