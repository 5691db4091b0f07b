"""`edgeship sweep`: the device-budgeted search. Candidates over budget are never trained, the test split never
steers the pick, a SIGKILLed sweep resumes without losing or repeating a trial, two workers share one PostgreSQL
study, an impossible budget is one line and exit 1, and an emulated board's timings never decide."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SPACE = """precisions = ["int8", "float32"]
[[backbones]]
name = "small_cnn"
alpha = [0.25, 0.5, 1.0]
image_size = [16]
"""


def known_timings(files, targets, threads):
    """Injected p50s (no test may depend on this machine's speed): 1 ms per million multiply-adds."""
    from edgeship.core.static_cost import static_cost

    return {Path(f).name: {t: (static_cost(f).macs / 1e6, False) for t in targets} for f in files}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from edgeship.train import write_digits_dataset

    return write_digits_dataset(tmp_path_factory.mktemp("sweep") / "digits", size=16, per_class=40, classes=4)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.toml"
    path.write_text(SPACE)
    return path


def _options(space_file, **budget):
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan

    return SweepOptions(budget=Budget(**budget), space=space_file, plan=TrainingPlan(epochs=3), bench=known_timings,
                        show_progress=False, bench_runs=5)


# ------------------------------------------------------------------------------------------ pure parts

def test_budgets_read_as_people_write_them():
    from edgeship.runtime.errors import UsageError
    from edgeship.sweep import parse_latency, parse_size

    assert parse_latency("20ms") == 20 and parse_latency("800us") == pytest.approx(0.8)
    assert parse_latency("0.5 ms") == 0.5 and parse_latency("2") == 2 and parse_latency("1s") == 1000
    assert parse_size("4MB") == 4_000_000 and parse_size("4MiB") == 4 * 2 ** 20 and parse_size("500KB") == 500_000
    for bad in ("fast", "20 parsecs", "-3ms", "0"):
        with pytest.raises(UsageError, match="--max-latency"):
            parse_latency(bad)


def test_a_space_names_registry_entries_and_refuses_what_would_do_nothing(tmp_path):
    from edgeship.runtime.errors import EdgeshipError
    from edgeship.sweep import load_space

    tiny = load_space("tiny")
    assert tiny.formats == ("tflite_int8", "tflite")
    assert {a.backbone for a in tiny.architectures} == {"small_cnn", "mobilenet_v2"}
    assert len(tiny.architectures) == 3 * 3 + 2 and len({a.key for a in tiny.architectures}) == 11
    for text, message in (('[[backbones]]\nname = "efficientnet_b0"\nalpha = [0.5]\n', "--alpha does nothing"),
                          ('[[backbones]]\nname = "nope"\n', "unknown backbone"),
                          ('precisions = ["int4"]\n[[backbones]]\nname = "small_cnn"\n', "precision 'int4'"),
                          ('[[backbones]]\nname = "small_cnn"\nfine_tune_layers = [5]\n', "needs pretrained"),
                          ('[[backbones]]\nname = "small_cnn"\nwidth = 2\n', "unknown: width")):
        path = tmp_path / "space.toml"
        path.write_text(text)
        with pytest.raises(EdgeshipError, match=message):
            load_space(path)


def test_a_trial_claimed_an_instant_ago_is_not_taken_for_a_dead_one(tmp_path):
    """Between a worker setting a trial RUNNING and marking it with its name, another worker's stale check must
    not end it (two workers on one PostgreSQL study met exactly that: UpdateFinishedTrialError)."""
    from optuna.trial import TrialState

    from edgeship.sweep import ledger

    storage = ledger.open_storage(None, tmp_path)
    book = ledger.Ledger(storage, "s/measure", ["minimize"], {"budget": 1})
    book.queue_once(["x"])
    waiting = book.study.get_trials(deepcopy=False)[0]
    trial_id = book.storage.get_trial_id_from_study_id_trial_number(book.study_id, waiting.number)
    assert book.storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # claimed, not yet named
    assert book.recover_stale() == []
    assert book.study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING


def test_the_ledger_gives_each_trial_to_one_worker_and_queues_a_dead_workers_again(tmp_path):
    import socket

    import optuna
    from edgeship.runtime.errors import UsageError
    from edgeship.sweep import ledger

    storage = ledger.open_storage(None, tmp_path)
    first = ledger.Ledger(storage, "s/measure", ["minimize"], {"budget": 1})
    first.queue_once(["x", "y"])
    second = ledger.Ledger(storage, "s/measure", ["minimize"], {"budget": 1})  # a worker joining the study
    assert first.creator and not second.creator
    mine, theirs = first.claim(), second.claim()
    assert {mine.params["candidate"], theirs.params["candidate"]} == {"x", "y"} and first.claim() is None
    gone = subprocess.Popen(["true"])
    gone.wait()
    theirs.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")  # that worker was SIGKILLed
    assert first.recover_stale() == [theirs.params["candidate"]]
    retried = first.claim()
    assert retried.params == theirs.params and retried.user_attrs["retry_of"] == theirs.number
    first.give_back(mine)  # an error here: failed, and queued again
    again = first.claim()
    assert again.params == mine.params and first.claim() is None
    for trial in (retried, again):
        first.study.tell(trial, 1.0)
    assert sorted(first.finished()) == ["x", "y"]
    states = [t.state for t in first.study.get_trials()]
    assert states.count(optuna.trial.TrialState.FAIL) == 2 and states.count(optuna.trial.TrialState.COMPLETE) == 2
    with pytest.raises(UsageError, match=r"started with other settings \(budget\)"):
        ledger.Ledger(storage, "s/measure", ["minimize"], {"budget": 2}).queue_once(["x", "y"])


# ----------------------------------------------------------------- budget, trainings and the test split

def _poisoned_copy(digits: Path, root: Path) -> tuple[Path, Path]:
    """Two Food-101-style list datasets of the same images: one honest, one whose official test split has every
    label rotated to another class and every image replaced with noise. Train/val/calib come from train.txt,
    the same in both."""
    from PIL import Image

    classes = (digits / "classes.txt").read_text().split()
    out = []
    for name, poison in (("honest", False), ("poisoned", True)):
        data = root / name
        (data / "meta").mkdir(parents=True)
        train, test = [], []
        rng = np.random.default_rng(3)
        for c, label in enumerate(classes):
            files = sorted((digits / label).glob("*.png"))
            (data / "images" / label).mkdir(parents=True, exist_ok=True)
            for i, path in enumerate(files):
                entry = f"{label}/{path.stem}"
                if i % 4 == 0:
                    if poison:
                        wrong = classes[(c + 1) % len(classes)]
                        (data / "images" / wrong).mkdir(parents=True, exist_ok=True)
                        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                            data / "images" / wrong / f"noise_{path.stem}.png")
                        entry = f"{wrong}/noise_{path.stem}"
                    test.append(entry)
                else:
                    train.append(entry)
                if not (poison and i % 4 == 0):
                    (data / "images" / label / path.name).write_bytes(path.read_bytes())
        (data / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
        (data / "meta" / "train.txt").write_text("\n".join(train) + "\n")
        (data / "meta" / "test.txt").write_text("\n".join(test) + "\n")
        out.append(data)
    return out[0], out[1]


@pytest.fixture(scope="module")
def two_sweeps(digits, space_file, tmp_path_factory, request):
    """The same sweep on the honest and the poisoned dataset, in this process, every training counted."""
    import edgeship.train
    from edgeship.sweep import run_sweep

    root = tmp_path_factory.mktemp("poison")
    honest, poisoned = _poisoned_copy(digits, root)
    trained, real_train = [], edgeship.train.train
    patch = pytest.MonkeyPatch()
    patch.setattr(edgeship.train, "train", lambda data, out, config=None: (trained.append(Path(out).name),
                                                                           real_train(data, out, config))[1])
    from edgeship.sweep.search import SweepImpossible

    results = {}
    try:
        # 1 ms per million MACs: small_cnn at 16 px is 0.21 (a0.25), 0.74 (a0.5) and 2.73 ms (a1.0)
        for name, data in (("honest", honest), ("poisoned", poisoned)):
            try:
                results[name] = run_sweep(data, root / f"sweep-{name}", _options(space_file, max_latency_ms=1.0))
            except SweepImpossible as exc:  # every finalist vetoed by its gate on the poisoned test split
                results[name] = exc.result
    finally:
        patch.undo()
    return results, trained


def test_a_candidate_over_the_latency_budget_is_never_trained(two_sweeps):
    results, trained = two_sweeps
    result = results["honest"]
    rows = {(r.key, r.format): r for r in result.record.rows}
    over = rows[("small_cnn-16px-a1", "tflite_int8")]
    assert over.verdict == "over-budget" and over.reasons == ["p50 2.73 ms > 1 ms on local"]
    assert over.epochs is None and over.run is None
    out = result.json_path.parent
    assert not (out / "trials" / "small_cnn-16px-a1").exists()
    # two sweeps, two feasible architectures each: four trainings, none of the one over budget
    assert sorted(trained) == sorted(["small_cnn-16px-a0.25", "small_cnn-16px-a0.5"] * 2), trained
    assert result.record.trainings == 2
    # its cost was still measured, from a real conversion: the file exists with the size recorded
    assert (out / "measure" / "small_cnn-16px-a1.model_int8.tflite").stat().st_size == over.size_bytes


def test_the_pick_is_within_budget_on_its_real_bench_and_the_record_follows_the_schema(two_sweeps):
    from edgeship.core.schema import schema_errors

    result = two_sweeps[0]["honest"]
    pick = result.pick
    assert pick is not None and pick.verdict == "pick"
    assert pick.size_bytes == Path(pick.run, "bundle", "model_int8.tflite" if pick.format == "tflite_int8"
                                   else "model_float32.tflite").stat().st_size
    assert pick.bench_ms["local"] is not None and pick.test["accuracy"] is not None and pick.gate is not None
    best = max(r.val_accuracy for r in result.record.rows if r.val_accuracy is not None and r.verdict != "over-budget")
    assert pick.val_accuracy == best  # chosen on validation: nothing within budget scored higher there
    data = json.loads(result.json_path.read_text())
    assert schema_errors("sweep", data) == []
    assert data["pick"]["key"] == pick.key and (result.json_path.parent / "pareto.png").stat().st_size > 10_000
    # the pick's run is a normal edgeship run: its report gates, its bundle predicts, its bench is in it
    from edgeship.core.report import load_report
    from edgeship.export.gate import GateThresholds, evaluate_gate
    from edgeship.runtime import Classifier

    report, _ = load_report(pick.run)
    assert [v.passed for v in evaluate_gate(report, GateThresholds()) if v.artifact == pick.format] == [pick.gate["passed"]]
    image = next(Path(pick.run).parent.parent.parent.glob("honest/images/*/*.png"))
    assert Classifier.load(Path(pick.run) / "bundle", artifact=pick.format).predict(image, top_k=1)[0].score > 0
    assert json.loads((Path(pick.run) / "bench.json").read_text())["rows"]
    md = result.markdown.read_text()
    assert f"**Pick: {pick.key} {pick.format}**" in md and "never trained" not in md.split("|")[0]


def test_poisoning_the_test_split_can_veto_the_pick_but_never_steer_it(two_sweeps):
    """The test split chooses nothing: every validation figure, every training and every verdict before the finalists
    is the same with its labels rotated and its images replaced by noise. It can only veto: a pick must pass its gate
    on test, so a poisoned finalist fails it and is not the pick; a candidate the honest sweep did not pick never is."""
    results, _ = two_sweeps
    honest, poisoned = results["honest"].record, results["poisoned"].record
    assert honest.pick is not None and results["honest"].pick.gate["passed"] is True
    assert poisoned.pick is None or (poisoned.pick["key"], poisoned.pick["format"]) == \
        (honest.pick["key"], honest.pick["format"])
    for a, b in zip(honest.rows, poisoned.rows):
        assert (a.key, a.format, a.pruned_at, a.val, a.epochs) == (b.key, b.format, b.pruned_at, b.val, b.epochs)
        trained = ("trained", "finalist", "pick")  # a vetoed finalist lets the next trained one be benched
        if a.verdict in trained or b.verdict in trained:
            assert a.verdict in trained and b.verdict in trained and (b.verdict != "pick" or a.verdict == "pick")
        else:
            assert a.verdict == b.verdict
    vetoed = [r for r in poisoned.rows if r.verdict == "finalist" and r.gate and not r.gate["passed"]]
    assert vetoed and all(any("gate failed on the test split" in why for why in r.reasons) for r in vetoed)
    # the poison reached the test split: the honest pick's figures there are far better than the same row's poisoned
    same = next(r for r in poisoned.rows if (r.key, r.format) == (honest.pick["key"], honest.pick["format"]))
    assert same.test["accuracy"] < results["honest"].pick.test["accuracy"] - 0.3


# ----------------------------------------------------------------------------------- the command line

def _sweep_command(data, out, *flags):
    return [sys.executable, "-m", "edgeship", "sweep", str(data), "--out", str(out), *map(str, flags)]


def _finished(storage_url: str, study: str) -> dict[str, list]:
    import optuna

    trials = optuna.load_study(study_name=study, storage=storage_url).get_trials(deepcopy=False)
    states = {}
    for trial in trials:
        states.setdefault(trial.state.name, []).append(trial.params.get("candidate"))
    return states


def test_an_impossible_budget_is_one_line_and_exit_1_with_the_closest_candidates(digits, space_file, tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run(_sweep_command(digits, out, "--space", space_file, "--max-size", "1KB", "--epochs", "2"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgeship: error")]
    assert len(errors) == 1 and "no candidate meets the budget (size <= 1 kB" in errors[0], done.stderr
    assert "closest: small_cnn-16px-a0.25 tflite_int8 (size" in errors[0]
    assert "Traceback" not in done.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert record["pick"] is None and record["trainings"] == 0 and not (out / "trials").exists()


def test_a_sigkilled_sweep_resumes_without_losing_or_repeating_a_trial(digits, space_file, tmp_path):
    out = tmp_path / "sweep"
    command = _sweep_command(digits, out, "--space", space_file, "--max-size", "300KB", "--epochs", "3")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    deadline = time.time() + 600
    for line in first.stdout:  # kill it in the training stage, after one candidate finished training
        if line.startswith("[train 1/") or time.time() > deadline:
            break
    url = f"sqlite:///{out / 'study.db'}"
    while not _finished(url, "sweep/train").get("RUNNING") and time.time() < deadline:
        time.sleep(0.2)  # ... and while the next one is running
    time.sleep(1.0)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    before = _finished(url, "sweep/train")
    assert len(before.get("RUNNING", [])) == 1, before  # cut off mid-trial
    kept = {n for state in ("COMPLETE", "PRUNED") for n in before.get(state, [])}
    assert len(kept) == 1, before
    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    measure, train = _finished(url, "sweep/measure"), _finished(url, "sweep/train")
    # measured once each, before the kill: none again
    assert sorted(measure["COMPLETE"]) == sorted(["small_cnn-16px-a0.25", "small_cnn-16px-a0.5", "small_cnn-16px-a1"])
    finished = train.get("COMPLETE", []) + train.get("PRUNED", [])
    assert sorted(finished) == sorted(set(finished)) and len(finished) == 3  # none lost, none twice
    assert kept <= set(finished)
    rerun = [line for line in second.stdout.splitlines() if line.startswith("[")]
    assert not any(f"] {key}:" in line for key in kept for line in rerun), rerun  # what finished is not redone
    assert not any(line.startswith("[measure") for line in rerun), rerun
    assert train.get("FAIL") == before["RUNNING"] and train.get("RUNNING", []) == []  # the one cut off, run again
    record = json.loads((out / "sweep.json").read_text())
    assert record["pick"] is not None and record["trainings"] == 3


def _postgres(tmp_path: Path):
    """A PostgreSQL server of Debian's package on a loopback port, set up here (trust auth, a throwaway
    cluster owned by the `postgres` user); skipped with the reason when it cannot be had."""
    import glob
    import shutil

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from sshd import find_or_install, free_port  # noqa: E402 - the shared apt helper

    _, reason = find_or_install(tuple(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ("/usr/lib/postgresql/15/bin/initdb",),
                                "postgresql")
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries or shutil.which("runuser") is None:
        pytest.skip(reason or "no PostgreSQL server binaries")
    bin_dir = Path(binaries[-1])
    import tempfile

    cluster = Path(tempfile.mkdtemp(prefix="edgeship-pg-"))  # pytest's folders are root's alone: postgres cannot enter
    shutil.chown(cluster, "postgres")
    cluster.chmod(0o700)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(cluster / "data"), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=300)
    port = free_port()
    server = subprocess.Popen([*as_postgres, str(bin_dir / "postgres"), "-D", str(cluster / "data"), "-p", str(port),
                               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={cluster}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    import sqlalchemy

    deadline = time.time() + 60
    while True:
        try:
            sqlalchemy.create_engine(url).connect().close()
            break
        except Exception as exc:
            if time.time() > deadline or server.poll() is not None:
                server.terminate()
                pytest.skip(f"the PostgreSQL server did not start: {str(exc).splitlines()[0][:200]}")
            time.sleep(0.5)
    return server, url, cluster


def test_two_workers_share_one_postgresql_study_without_duplicate_trials(digits, space_file, tmp_path):
    pytest.importorskip("psycopg")
    import shutil

    server, url, cluster = _postgres(tmp_path)
    try:
        out = tmp_path / "shared"
        command = _sweep_command(digits, out, "--space", space_file, "--max-size", "300KB", "--epochs", "2",
                                 "--storage", url, "--study", "cluster")
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        outputs = [w.communicate(timeout=900) for w in workers]
        for worker, (stdout, stderr) in zip(workers, outputs):
            assert worker.returncode == 0, stdout + stderr
        ran = []
        for stdout, _ in outputs:
            ran.append({(line.split()[0][1:], line.split("] ", 1)[1].split(":")[0]) for line in stdout.splitlines()
                        if line.startswith("[measure ") or line.startswith("[train ")})
        assert ran[0] and ran[1] and not ran[0] & ran[1], ran  # both worked, never on the same trial
        study = {(stage, key) for stage in ("measure", "train")
                 for state, keys in _finished(url, f"cluster/{stage}").items() if state in ("COMPLETE", "PRUNED")
                 for key in keys}
        everything = [key for stage in ("measure", "train") for state, keys in _finished(url, f"cluster/{stage}").items()
                      for key in keys]
        assert ran[0] | ran[1] == study  # the union of what the workers did is the study
        assert len(everything) == len(study) == 3 + 3  # no duplicate, failed or left-over trial
        assert json.loads((out / "sweep.json").read_text())["pick"] is not None
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(cluster, ignore_errors=True)


@pytest.mark.ssh
def test_an_emulated_board_is_marked_and_never_judges_latency(digits, tmp_path, aarch64_target):
    space = tmp_path / "one.toml"
    space.write_text('precisions = ["int8"]\n[[backbones]]\nname = "small_cnn"\nalpha = [0.25]\nimage_size = [16]\n')
    ssh = ["--identity", aarch64_target.identity, "--known-hosts", aarch64_target.known_hosts, "--remote-python",
           aarch64_target.python]
    out = tmp_path / "sweep"
    done = subprocess.run(_sweep_command(digits, out, "--space", space, "--target", "local", "--target",
                                         aarch64_target.url, "--max-latency", "1s", "--epochs", "1", *ssh),
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((out / "sweep.json").read_text())
    emulated = {t["target"]: t["emulated"] for t in record["targets"]}
    assert emulated == {"local": False, aarch64_target.url: True}
    (row,) = record["rows"]
    assert row["emulated"][aarch64_target.url] is True and row["latency_ms"][aarch64_target.url] > 0
    assert row["verdict"] == "pick" and row["bench_ms"][aarch64_target.url] > 0
    assert "emulated: timings shown, never judged" in (out / "sweep.md").read_text()
    # the emulated board alone cannot judge a latency budget: one line, before any training
    alone = subprocess.run(_sweep_command(digits, tmp_path / "alone", "--space", space, "--target", aarch64_target.url,
                                          "--max-latency", "1s", *ssh), capture_output=True, text=True, timeout=1500)
    assert alone.returncode == 2 and "emulated (QEMU user mode), so its timings cannot judge --max-latency" in alone.stderr
    assert not (tmp_path / "alone" / "trials").exists()


def test_a_finalist_whose_gate_fails_or_whose_report_is_stale_is_not_the_pick(exported_run, tmp_path, monkeypatch):
    """The best on validation fails its gate on test (its report says int8 agrees on half the images); the next
    has an artifact swapped after its report; the third is sound and is the pick."""
    import shutil

    from edgeship.sweep import Budget, SweepOptions
    from edgeship.sweep import finalize
    from edgeship.sweep.record import CandidateRow

    runs = {}
    for name in ("gate_fails", "stale", "sound"):
        runs[name] = tmp_path / name
        shutil.copytree(exported_run, runs[name])
    report_path = runs["gate_fails"] / "report.json"
    report = json.loads(report_path.read_text())
    for row in report["artifacts"]:
        if row["name"] == "tflite_int8":
            row["agreement"] = 0.5
    report_path.write_text(json.dumps(report))
    (runs["stale"] / "bundle" / "model_int8.tflite").write_bytes(
        (runs["stale"] / "bundle" / "model_float32.tflite").read_bytes())
    monkeypatch.setattr(finalize, "_bench_real", lambda run, targets, options: {"tflite_int8": {"local": 1.0}})
    rows = [CandidateRow(name, "tflite_int8", {}, "trained", run=str(runs[name]), size_bytes=1000,
                         val={"accuracy": accuracy}) for name, accuracy in (("gate_fails", 0.99), ("stale", 0.98),
                                                                           ("sound", 0.97))]
    pick, why = finalize.finalize(rows, ["local"], set(), SweepOptions(budget=Budget(max_drop_pp=1.0), finalists=3))
    assert pick is not None and pick["key"] == "sound", why
    verdicts = {r.key: r for r in rows}
    assert verdicts["gate_fails"].verdict == "finalist" and verdicts["gate_fails"].gate["passed"] is False
    assert any("gate failed on the test split" in r for r in verdicts["gate_fails"].reasons)
    assert any("cannot be trusted" in r for r in verdicts["stale"].reasons)


def test_what_can_be_known_before_measuring_is_checked_first(digits, tmp_path):
    """Weights that cannot be had and a target that does not answer are one line each, before any candidate is
    measured (offline, the default space used to measure 50 candidates for 16 minutes first)."""
    space = tmp_path / "space.toml"
    space.write_text('precisions = ["int8"]\n[[backbones]]\nname = "mobilenet_v2"\nalpha = [0.35]\n'
                     f'image_size = [32]\nweights = "{tmp_path / "gone.weights.h5"}"\n')
    started = time.monotonic()
    done = subprocess.run(_sweep_command(digits, tmp_path / "a", "--space", space), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "weights file not found" in done.stderr and "nothing was measured" in done.stderr
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(SPACE)
    refused = subprocess.run(_sweep_command(digits, tmp_path / "b", "--space", tiny, "--target",
                                            "ssh://nobody@127.0.0.1:1"), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "does not answer" in refused.stderr, refused.stderr
    assert time.monotonic() - started < 240
    import optuna
    from sqlalchemy.engine import URL

    for out in ("a", "b"):
        url = URL.create("sqlite", database=str((tmp_path / out / "study.db").resolve())).render_as_string()
        assert optuna.get_all_study_names(url) == []  # no candidate was queued, let alone measured


def test_an_out_folder_named_with_question_mark_and_hash_keeps_its_ledger(tmp_path):
    from edgeship.sweep.ledger import open_storage

    out = tmp_path / "sweep?mode=ro#x"
    out.mkdir()
    open_storage(None, out)
    assert (out / "study.db").is_file() and not (tmp_path / "sweep").exists()


def test_a_second_sweep_over_an_overlapping_space_measures_nothing_twice(digits, tmp_path, monkeypatch):
    """Real measurements (no injected timings) kept in the shared storage: the second sweep, another --out with
    one architecture more, converts and benches only the new one."""
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan, run_sweep
    from edgeship.sweep import search

    measured = []
    real = search.measure_architecture
    monkeypatch.setattr(search, "measure_architecture",
                        lambda arch, *a, **k: (measured.append(arch.key), real(arch, *a, **k))[1])
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text('precisions = ["int8"]\n[[backbones]]\nname = "small_cnn"\nalpha = [0.25]\nimage_size = [16]\n')
    second.write_text('precisions = ["int8"]\n[[backbones]]\nname = "small_cnn"\nalpha = [0.25, 0.5]\n'
                      'image_size = [16]\n')

    def sweep(space, out):
        return run_sweep(digits, tmp_path / out, SweepOptions(budget=Budget(max_drop_pp=100.0), space=space,
                                                              storage=storage, plan=TrainingPlan(epochs=1), trials=1,
                                                              finalists=1, show_progress=False, bench_runs=5))

    sweep(first, "a")
    assert measured == ["small_cnn-16px-a0.25"]
    result = sweep(second, "b")
    assert measured == ["small_cnn-16px-a0.25", "small_cnn-16px-a0.5"]  # the shared one was not measured again
    rows = {r.key: r for r in result.record.rows}
    assert rows["small_cnn-16px-a0.25"].latency_ms["local"] > 0 and rows["small_cnn-16px-a0.25"].size_bytes > 0


def test_candidates_that_differ_only_in_weights_share_one_measurement():
    """Weights and fine-tuned layers change no cost: the default space's 50 candidates are 25 measurements."""
    from edgeship.sweep import Architecture, load_space

    tuned = Architecture("mobilenet_v2", 96, 0.35, "imagenet", 20)
    assert tuned.cost_key == Architecture("mobilenet_v2", 96, 0.35, "imagenet", 0).cost_key \
        == Architecture("mobilenet_v2", 96, 0.35).key != tuned.key
    space = load_space("default")
    assert (len(space.architectures), len({a.cost_key for a in space.architectures})) == (50, 25)
