"""Components trained side by side: local worker processes, Ray tasks and one job per component
(--only) give the weights of a sequential fit, and a killed worker's component is trained again."""

import importlib.util
import json
import os
import signal

import pytest

from conftest import FORGET, TINY, run_cli, run_digests, start_cli, wait_until
from keras_sisa import InputError, SISAClassifier, load
from keras_sisa.parallel import Execution, core_shares
from tiny_models import tiny_cnn


# How components are placed: two local worker processes, or Ray tasks on a local Ray runtime.
PLACEMENTS = {"local": ["--workers", "2"], "ray": ["--backend", "ray"]}
# Ray starts a runtime per test (minutes on 2 cores): its cases run in .ci/run's slow step.
PLACED = [pytest.param("local"), pytest.param("ray", marks=pytest.mark.slow)]


def task_processes(placement: str, cli: int) -> list[int]:
    """The processes training components for the `keras-sisa` process `cli`: its spawned
    workers, or the Ray workers running a task (Ray titles them ray::<function>)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        if (command.startswith(b"ray::train_in_run") if placement == "ray"
                else parent == cli and b"spawn_main" in command):
            found.append(int(entry))
    return found


@pytest.mark.parametrize("placement", PLACED)
def test_fit_and_forget_give_the_weights_of_one_process(placement, small_npz, reference, tmp_path):
    run = str(tmp_path / "run")
    fitted = run_cli("fit", "--npz", small_npz, *TINY, *PLACEMENTS[placement], "--out", run)
    assert fitted.returncode == 0, fitted.stderr
    assert run_digests(run) == reference[0]
    forgot = run_cli("forget", run, "--class", FORGET, *PLACEMENTS[placement])
    assert forgot.returncode == 0, forgot.stderr
    assert run_digests(run) == reference[1]


@pytest.mark.parametrize("placement", PLACED)
def test_killed_workers_are_retried_and_the_fit_completes(placement, small_npz, reference, tmp_path):
    run = str(tmp_path / "run")
    gate = os.path.join(run, "checkpoints", "gate")
    fit = start_cli("fit", "--npz", small_npz, *TINY, *PLACEMENTS[placement], "--out", run)
    workers = []

    def training_the_gate() -> bool:  # a Ray task's process lives only while it runs: look until one is seen
        workers[:] = task_processes(placement, fit.pid) if os.path.isdir(gate) and len(os.listdir(gate)) >= 2 else []
        return bool(workers)

    wait_until(fit, training_the_gate, timeout=300)
    for pid in workers:  # the gate is not done, so whichever trains it dies mid-component
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = fit.communicate()
    assert fit.returncode == 0, stderr
    assert placement == "ray" or "A worker process died" in stdout
    assert run_digests(run) == reference[0]


def test_one_job_per_component_then_a_final_fit(small_npz, reference, tmp_path):
    run = str(tmp_path / "run")
    assert "no plan yet" in run_cli("fit", "--out", run, "--only", "gate").stderr
    planned = run_cli("fit", "--npz", small_npz, *TINY, "--out", run, "--only", "plan")
    assert planned.returncode == 0, planned.stderr
    assert "expert-0, expert-1, gate" in planned.stdout
    jobs = [start_cli("fit", "--out", run, "--only", only) for only in ("expert:0", "expert:1", "gate")]
    for job in jobs:
        assert job.wait() == 0, job.stderr.read()
    finished = run_cli("fit", "--out", run)
    assert finished.returncode == 0, finished.stderr
    assert run_digests(run) == reference[0]
    fitted = load(run)
    assert sorted(fitted.manifest["component_seconds"]) == ["expert-0", "expert-1", "gate"]
    assert fitted.manifest["fit_seconds"] > 0 and not os.path.exists(os.path.join(run, "timings"))
    assert "fitted already" in run_cli("fit", "--out", run, "--only", "gate").stdout


@pytest.mark.slow  # four fits in child processes with other thread pools
def test_a_run_keeps_its_thread_count_wherever_it_trains(small_npz, reference, tmp_path):
    whole, jobs = str(tmp_path / "whole"), str(tmp_path / "jobs")
    assert run_cli("fit", "--npz", small_npz, *TINY, "--threads", "1", "--out", whole).returncode == 0
    assert run_cli("fit", "--npz", small_npz, *TINY, "--threads", "1", "--out", jobs, "--only", "plan").returncode == 0
    for only in ("expert:0", "expert:1", "gate"):  # this process has 2 threads; the run says 1
        assert run_cli("fit", "--out", jobs, "--only", only).returncode == 0
    assert run_cli("fit", "--out", jobs).returncode == 0
    assert run_digests(jobs) == run_digests(whole) != reference[0]
    assert run_cli("forget", whole, "--class", FORGET).returncode == 0
    refused = run_cli("verify", whole)
    assert refused.returncode == 2 and "TF_NUM_INTRAOP_THREADS=1" in refused.stderr
    verified = run_cli("verify", whole, "--json", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    assert verified.returncode == 0, verified.stderr
    assert all(row["identical"] for row in json.loads(verified.stdout))


@pytest.fixture(scope="module")
def planned(small_npz, tmp_path_factory):
    """A run with data and plan written and nothing trained, as per-component jobs find it."""
    run = str(tmp_path_factory.mktemp("planned") / "run")
    result = run_cli("fit", "--npz", small_npz, *TINY, "--out", run, "--only", "plan")
    assert result.returncode == 0, result.stderr
    return run


@pytest.mark.parametrize("args, message", [
    (["--only", "expert:x"], "Expected --only plan, gate or expert:K"),
    (["--only", "expert:7"], "no component 'expert-7'"),
    (["--only", "gate", "--workers", "2"], "takes no --workers"),
])
def test_bad_only_exits_2_and_changes_nothing(planned, args, message):
    before = sorted(os.listdir(planned)), open(os.path.join(planned, "manifest.json")).read()
    result = run_cli("fit", "--out", planned, *args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert (sorted(os.listdir(planned)), open(os.path.join(planned, "manifest.json")).read()) == before


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers to be 1 or more"),
    (["--ray-address", "localhost:6379"], "(--ray-address) needs backend=\"ray\" (--backend ray)"),
    (["--workers", "2", "--backend", "ray"], "(--workers) applies to the local backend"),
])
def test_bad_execution_options_exit_2_before_writing(small_npz, tmp_path, args, message):
    result = run_cli("fit", "--npz", small_npz, *TINY, "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_ray_backend_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ray" else object())
    with pytest.raises(InputError, match=r"pip install 'keras-sisa\[ray\]'"):
        Execution(backend="ray")


def test_core_shares_split_cores_and_take_turns_when_short():
    assert core_shares(2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert core_shares(3, [0, 1]) == [[0], [1], [0]]
    with pytest.raises(InputError, match="backend"):
        Execution(backend="slurm")


def test_builders_other_processes_cannot_import_are_refused_before_writing(small, tmp_path):
    sisa = SISAClassifier(str(tmp_path / "run"), model_fn=lambda shape, n: tiny_cnn(shape, n),
                          gate_fn=tiny_cnn, shards=2, epochs=1)
    with pytest.raises(InputError, match="module level"):
        sisa.fit(small.x_train, small.y_train, small.class_names, sample_ids=small.ids, workers=2)
    assert not (tmp_path / "run").exists()


def test_a_fit_in_workers_shows_one_progress_bar_over_every_slice(small, tmp_path, capsys):
    sisa = SISAClassifier(str(tmp_path / "run"), tiny_cnn, tiny_cnn, shards=2, epochs=1, gate_epochs=1,
                          batch_size=32, gate_batch_size=32)
    sisa.fit(small.x_train, small.y_train, small.class_names, sample_ids=small.ids, workers=2, verbose=1)
    slices = sum(len(c.slices) for c in sisa.plan.components)
    shown = capsys.readouterr().out
    assert f"{slices}/{slices}" in shown and "/slice" in shown and "trained in" not in shown, shown
