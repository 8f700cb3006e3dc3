"""Forgetting people: owners through every data source, owner tiers, exactness, no clear ids."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY, fit_small, read_manifest, run_cli, run_digests, start_cli, write_npz
import keras_sisa
from keras_sisa import InputError, data, load, owners as owner_ids
from keras_sisa.cli.main import main
from keras_sisa.plan import TIER_PREFIX
from test_data import write_folder
from test_parallel import PLACEMENTS
from test_reliability import kill_when
from test_unlearning import digests, refit_without, stored_image_hashes

# The default tiers, which the test data is too small to get by default, and their slices: o1, o2, ...
OWNER_TIERS = owner_ids.DEFAULT_TIERS
TIER_FLAGS = ["--owner-tiers", ",".join(str(t) for t in OWNER_TIERS)]
TIERS = [f"{TIER_PREFIX}{k}" for k in range(1, len(OWNER_TIERS) + 1)]


def skewed_owners(count: int, seed: int = 0) -> list[str]:
    """Owner ids for `count` images: a few owners with many images, many with one or two."""
    rng = np.random.default_rng(seed)
    return [f"person-{int(k):03d}" for k in (rng.zipf(1.6, count) - 1) % 60]


@pytest.fixture(scope="session")
def people(small):
    return skewed_owners(len(small.y_train))


@pytest.fixture(scope="session")
def owned(small, people, tmp_path_factory):
    """A fitted run whose images carry owners, in the default owner tiers."""
    return fit_small(tmp_path_factory.mktemp("owned") / "run", small, owners=people, owner_tiers=OWNER_TIERS)


def copy(run, tmp_path, name="copy"):
    shutil.copytree(run.directory, tmp_path / name)
    return load(str(tmp_path / name), model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")


def images_of(small, people, *who):
    return {int(i) for i, p in zip(small.ids, people) if p in who}


def by_size(people):
    names, counts = np.unique(people, return_counts=True)
    return [str(n) for n in names[np.argsort(-counts, kind="stable")]]


def test_tiers_put_the_smallest_owners_last():
    keys = ["big"] * 50 + ["mid"] * 12 + [f"one-{k}" for k in range(8)]
    tiers = owner_ids.tiers_of(keys, np.zeros(len(keys)), (0.2, 0.12), seed=0)
    assert set(tiers[:50]) == {0}
    assert set(tiers[50:62]) == {1} and set(tiers[62:]) == {2}


def test_default_tiers_are_those_that_hold_enough_images():
    """A tier too small to learn from in its fixed epochs is left out; small data gets none."""
    assert owner_ids.default_tiers(60_000) == owner_ids.DEFAULT_TIERS
    assert owner_ids.default_tiers(10_000) == (0.25, 0.1)
    assert owner_ids.default_tiers(2_999) == ()
    for count in (3_000, 7_500, 15_000):
        assert min(t * count for t in owner_ids.default_tiers(count)) >= owner_ids.MIN_TIER_IMAGES


def test_tiers_leave_every_class_at_least_half_its_images_in_the_core():
    """Class 1 is all small owners: the tiers take only half of it, and the small owners of
    class 0 still join them."""
    keys = ["big"] * 40 + [f"zero-{k}" for k in range(10)] + [f"one-{k}" for k in range(10)]
    labels = np.array([0] * 50 + [1] * 10)
    tiers = owner_ids.tiers_of(keys, labels, (0.2, 0.1), seed=0)
    assert np.sum(tiers[labels == 1] > 0) == 5
    assert np.all(tiers[40:50] > 0) and set(tiers[:40]) == {0}


def test_plan_gives_each_expert_owner_slices_that_the_gate_leaves_out(owned, small, people):
    small_ids = images_of(small, people, *by_size(people)[-20:])
    for expert in owned.plan.experts:
        assert [s.id for s in expert.slices][-len(TIERS):] == TIERS
    gate = owned.plan.gate
    tier_ids = {i for e in owned.plan.experts for s in e.slices if s.id.startswith("o") for i in s.sample_ids}
    assert small_ids & tier_ids and not tier_ids & set(gate.sample_ids)


def test_one_class_shards_give_their_owner_slices_to_the_gate(small, people, tmp_path):
    """A one-class expert is constant, so its tier images train the gate, in the gate's last slices;
    a small owner there rewinds only those, and the forget still equals a refit."""
    sisa = fit_small(tmp_path / "run", small, owners=people, owner_tiers=OWNER_TIERS,
                     shards=len(small.class_names))
    gate = sisa.plan.gate
    assert [s.id for s in gate.slices][-len(TIERS):] == TIERS
    tiers = {tier: set() for tier in TIERS}
    for s in (s for e in sisa.plan.experts for s in e.slices if s.id in tiers):
        tiers[s.id] |= set(s.sample_ids)
    assert {s.id: set(s.sample_ids) for s in gate.slices[-len(TIERS):]} == tiers
    plan, last = sisa.plan, set(gate.slices[-1].sample_ids)
    who = next(p for p in by_size(people)[::-1] if images_of(small, people, p) <= last)
    deleted = images_of(small, people, who)
    receipt = sisa.forget(owners=[who], verbose=0, audit=False)
    assert receipt["rewound"]["gate"] == {"to_slice": TIERS[-2], "retrained_slices": 1,
                                          "of_slices": len(TIERS) + 1}
    refit = refit_without(small, tmp_path, plan.without(deleted), deleted, shards=len(small.class_names))
    assert digests(sisa) == digests(refit)


def test_forget_owner_matches_a_refit_without_their_images(owned, small, people, tmp_path):
    sisa = copy(owned, tmp_path)
    plan = sisa.plan
    who = by_size(people)[0]  # the owner with most images: rewinds the core
    deleted = images_of(small, people, who)
    receipt = sisa.forget(owners=[who], verbose=0)
    assert receipt["deleted_count"] == len(deleted)
    assert receipt["owners"] == [{"owner_sha256": owner_ids.digest(sisa.manifest["owner_salt"], who),
                                  "images": len(deleted)}]
    refit = refit_without(small, tmp_path, plan.without(deleted), deleted)
    assert digests(sisa) == digests(refit)
    assert all(row["identical"] for row in sisa.verify())


def test_a_small_owner_rewinds_only_the_last_slices(owned, small, people, tmp_path):
    sisa = copy(owned, tmp_path)
    last = {i for e in owned.plan.experts for i in e.slices[-1].sample_ids}
    who = next(p for p in by_size(people)[::-1] if images_of(small, people, p) <= last)
    receipt = sisa.forget(owners=[who], verbose=0)
    assert "gate" not in receipt["rewound"]
    last_only = {"to_slice": TIERS[-2], "retrained_slices": 1, "of_slices": len(TIERS) + 2}
    assert receipt["rewound"] and all(r == last_only for r in receipt["rewound"].values())


def test_info_prices_the_largest_owner_at_a_whole_gate_refit(owned, people):
    expected = owned.info()["expected_owner_forget_seconds"]
    slices = owned.histories()
    gate = sum(h["seconds"] for h in slices["gate"].values())
    everything = sum(h.get("seconds", 0.0) for component in slices.values() for h in component.values())
    assert expected["owners"] == len(set(people))
    assert expected["median"] <= expected["p90"] <= expected["max"]
    assert gate <= expected["max"] <= everything


def test_adaptive_runs_train_owner_tiers_a_fixed_short_fit(small, people, tmp_path):
    """With the adaptive recipe every core slice stops on its held-out loss, but an owner tier
    trains `tier_epochs` on all of its images; a small owner's forget still equals a refit."""
    adaptive = dict(epochs=None, gate_epochs=None, max_epochs=6, patience=1, check_steps=2, tier_epochs=1)
    sisa = fit_small(tmp_path / "run", small, owners=people, owner_tiers=OWNER_TIERS, **adaptive)
    slices = sisa.recipe()["slices"]
    tiers = [row for rows in slices.values() for row in rows if row["slice"].startswith("o") and row["rounds"]]
    core = [row for rows in slices.values() for row in rows if not row["slice"].startswith("o") and row["rounds"]]
    assert tiers and all(row["rounds"] == 1 and row["validation_samples"] == 0 for row in tiers)
    assert core and all(row["validation_samples"] > 0 for row in core)
    expert = sisa.plan.experts[0]
    assert slices[expert.name][-1]["samples"] == 2 * len(expert.slices[-1].sample_ids)  # all, and as many replayed
    plan, last = sisa.plan, {i for e in sisa.plan.experts for i in e.slices[-1].sample_ids}
    who = next(p for p in by_size(people)[::-1] if images_of(small, people, p) <= last)
    deleted = images_of(small, people, who)
    sisa.forget(owners=[who], verbose=0, audit=False)
    assert digests(sisa) == digests(refit_without(small, tmp_path, plan.without(deleted), deleted, **adaptive))


def test_runs_fitted_before_tier_epochs_keep_training_their_tiers_adaptively():
    older = keras_sisa.TrainingConfig.from_manifest({"batch_size": 32, "learning_rate": 1e-3}).recipe(is_gate=True)
    assert older.adapts(is_tier=True)
    now = keras_sisa.TrainingConfig(tier_epochs=1).recipe(is_gate=True)
    assert not now.adapts(is_tier=True) and now.adapts(is_tier=False) and now.slice_epochs(5, is_tier=True) == 1
    fixed = keras_sisa.TrainingConfig(gate_epochs=2, tier_epochs=1).recipe(is_gate=True)  # explicit epochs win
    assert fixed.slice_epochs(5, is_tier=True) == 2


def test_tier_replay_and_average_set_how_owner_tiers_train_and_forgets_still_match_a_refit(small, people, tmp_path):
    sisa = fit_small(tmp_path / "run", small, owners=people, owner_tiers=OWNER_TIERS, tier_replay_ratio=0.5,
                     tier_ema=0.9)
    slices = sisa.recipe()["slices"]
    for component in sisa.plan.components:
        sizes = [len(s.sample_ids) for s in component.slices]
        ratio = 3.0 if component.is_gate else 1.0  # fit_small keeps the default replay ratios
        for k, (s, row) in enumerate(zip(component.slices, slices[component.name])):
            replayed = min(sum(sizes[:k]), round((0.5 if s.is_tier else ratio) * sizes[k]))
            assert not row["rounds"] or row["samples"] == sizes[k] + replayed, (component.name, s.id)
    assert any(row["rounds"] and row["slice"] == "o2" for rows in slices.values() for row in rows)
    info = CliRunner().invoke(main, ["info", sisa.directory]).output
    assert "owner tiers replay 0.5 per new image" in info and "weight average (momentum 0.9)" in info
    assert "(owner tiers 0.25, 0.1, 0.05)" in info
    plan, last = sisa.plan, {i for e in sisa.plan.experts for i in e.slices[-1].sample_ids}
    who = next(p for p in by_size(people)[::-1] if images_of(small, people, p) <= last)
    deleted = images_of(small, people, who)
    sisa.forget(owners=[who], verbose=0, audit=False)
    refit = refit_without(small, tmp_path, plan.without(deleted), deleted, tier_replay_ratio=0.5,
                          tier_ema=0.9)
    assert digests(sisa) == digests(refit)
    older = keras_sisa.TrainingConfig.from_manifest({"batch_size": 32, "learning_rate": 1e-3})
    assert older.tier_replay_ratio is None and older.tier_ema == 0
    gate = keras_sisa.TrainingConfig(gate_epochs=2, gate_ema=0.5, tier_ema=0.9).recipe(is_gate=True)
    assert gate.slice_ema(is_tier=True) == 0.9 and gate.slice_ema(is_tier=False) == 0.5
    assert keras_sisa.TrainingConfig(tier_ema=0.9).recipe(is_gate=False).slice_ema(is_tier=False) == 0


@pytest.mark.slow  # four owner forgets; one owner's forget against a refit stays in the default run
def test_several_owners_at_once_equal_one_by_one(owned, people, tmp_path):
    who = by_size(people)[1:4]
    batch, single = copy(owned, tmp_path, "batch"), copy(owned, tmp_path, "single")
    batch.forget(owners=who, verbose=0, audit=False)
    for person in who:
        single.forget(owners=[person], verbose=0, audit=False)
    assert digests(batch) == digests(single)
    assert batch.plan.to_json() == single.plan.to_json()


def test_no_owner_id_is_stored_in_clear_and_their_images_are_gone(owned, small, people, tmp_path):
    sisa = copy(owned, tmp_path)
    who = by_size(people)[2]
    rows = np.isin(small.ids, list(images_of(small, people, who)))
    sisa.forget(owners=[who], verbose=0)
    for root, _, files in os.walk(sisa.directory):
        for name in files:
            content = open(os.path.join(root, name), "rb").read()
            assert not any(p.encode() in content for p in set(people)), name
    gone = {hashlib.sha256(image.tobytes()).hexdigest() for image in small.x_train[rows]}
    assert not gone & stored_image_hashes(sisa)
    assert sisa.forget(owners=[who], verbose=0)["noop"]


def test_unknown_owner_and_a_run_without_owners_are_refused(owned, tmp_path):
    sisa = copy(owned, tmp_path)
    before = digests(sisa)
    with pytest.raises(InputError, match="Unknown owner 'nobody'"):
        sisa.forget(owners=["nobody"], verbose=0)
    assert digests(sisa) == before and sisa.manifest.get("receipts") is None
    result = CliRunner().invoke(main, ["forget", sisa.directory, "--owner", "nobody"])
    assert result.exit_code == 2 and "Unknown owner" in result.output


def test_cli_npz_owners_forget_by_owner_and_owners_file(small, people, tmp_path):
    npz = write_npz(tmp_path / "owned.npz", small, owners=np.array(people))
    run = str(tmp_path / "run")
    result = CliRunner().invoke(main, ["fit", "--npz", npz, *TINY, "--out", run])
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(main, ["info", run])
    assert "one owner: median" in info.output and "(owner tiers none)" in info.output  # too few images for one
    listing = tmp_path / "owners.txt"
    listing.write_text(f"{by_size(people)[-1]}\n\n{by_size(people)[-2]}\n")
    result = CliRunner().invoke(main, ["forget", run, "--owner", by_size(people)[-3], "--owners", str(listing)])
    assert result.exit_code == 0, result.output
    assert "of 3 owners" in result.output
    assert load(run, check=True).receipts()[0]["deleted_count"] == len(images_of(small, people, *by_size(people)[-3:]))


@pytest.mark.parametrize("owners, message", [
    (lambda n: np.array(["a"] * (n - 1)), "one owner per training image"),
    (lambda n: np.array(["a"] * (n - 1) + [""]), "must be non-empty"),
])
def test_bad_owner_arrays_exit_2(small, tmp_path, owners, message):
    npz = write_npz(tmp_path / "bad.npz", small, owners=owners(len(small.y_train)))
    result = CliRunner().invoke(main, ["fit", "--npz", npz, *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output
    assert not os.path.exists(tmp_path / "run")


def test_folder_owners_csv_and_their_test_images(small, tmp_path):
    folder = tmp_path / "photos"
    write_folder(folder, {name: small.x_train[small.y_train == k][:12] for k, name in enumerate(["cat", "dog"])})
    (folder / "owners.csv").write_text("path,owner\n" + "".join(
        f"{name}/{k}.png,{'ann' if k < 4 else 'bob'}\n" for name in ("cat", "dog") for k in range(8)))
    loaded = data.load(data_dir=str(folder), test_split=0.25)
    train_owners, test_owners = set(loaded.owners), set(loaded.test_owners)
    assert {"ann", "bob"} <= train_owners | test_owners and None in train_owners
    sisa = fit_small(tmp_path / "run", loaded, owners=loaded.owners, test_owners=loaded.test_owners)
    assert sisa.options["owner_tiers"] == [] and not any(s.is_tier for c in sisa.plan.components for s in c.slices)
    held = sum(o == "ann" for o in loaded.test_owners)
    before = len(sisa.store.read_arrays("data/test.npz")["y"])
    sisa.forget(owners=["ann"], verbose=0)
    assert len(sisa.store.read_arrays("data/test.npz")["y"]) == before - held
    (folder / "owners.csv").write_text("cat/99.png,carl\n")
    result = CliRunner().invoke(main, ["fit", "--data-dir", str(folder), *TINY, "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "'cat/99.png' is not an image of the folder" in result.output


@pytest.mark.slow  # two CLI fits and forgets, one in worker processes or Ray tasks
@pytest.mark.parametrize("placement", ["local", "ray"])
def test_owner_forget_in_workers_or_ray_gives_the_same_bits(placement, small, people, tmp_path):
    npz = write_npz(tmp_path / "owned.npz", small, owners=np.array(people))
    runs = {}
    for name, placed in (("sequential", []), ("placed", PLACEMENTS[placement])):
        runs[name] = str(tmp_path / name)
        assert run_cli("fit", "--npz", npz, *TINY, *TIER_FLAGS, *placed, "--out", runs[name]).returncode == 0
        forgot = run_cli("forget", runs[name], "--owner", by_size(people)[0], "--owner", by_size(people)[-1], *placed)
        assert forgot.returncode == 0, forgot.stderr
    assert run_digests(runs["sequential"]) == run_digests(runs["placed"])


@pytest.mark.slow  # five CLI processes; the default run kills class forgets the same way (test_reliability)
def test_an_owner_forget_killed_after_its_purge_is_finished_and_never_undone(small, people, tmp_path):
    npz = write_npz(tmp_path / "owned.npz", small, owners=np.array(people))
    fitted, killed = str(tmp_path / "fitted"), str(tmp_path / "killed")
    assert run_cli("fit", "--npz", npz, *TINY, *TIER_FLAGS, "--out", fitted).returncode == 0
    shutil.copytree(fitted, killed)
    who = by_size(people)[0]
    assert run_cli("forget", fitted, "--owner", who).returncode == 0
    kill_when(start_cli("forget", killed, "--owner", who),
              lambda: read_manifest(killed).get("pending_forget", {}).get("purged"))
    rows = np.isin(small.ids, list(images_of(small, people, who)))
    gone = {hashlib.sha256(image.tobytes()).hexdigest() for image in small.x_train[rows]}
    assert not gone & stored_image_hashes(load(killed, check=False))
    finished = run_cli("forget", killed)
    assert finished.returncode == 0, finished.stderr
    assert run_digests(killed) == run_digests(fitted)
    again = run_cli("forget", killed, "--owner", who)
    assert again.returncode == 0 and "already forgotten" in again.stdout
