"""Outputs you can trust (issue 16): complete-or-absent stage directories, verified readers,
and the overwrite rules, through the real writers and the CLI (no model: fast)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab import dirs
from pairlab.cli import main
from pairlab.dirs import CurateDir, EvalDir, RunDir, StageDirError


@pytest.fixture(scope="module")
def pool():
    from pairlab.simulate import simulate_pairs

    train, _ = simulate_pairs(n=160, seed=1, topics={"facts": 1.0, "definitions": 1.0})
    return train.reset_index(drop=True)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))


def _pool_file(tmp_path, pool):
    from pairlab.io import write_pairs

    return write_pairs(pool, tmp_path / "pool.parquet")


def _curate(src, out, *extra):
    return main(["curate", "--input", str(src), "--out", str(out), "--tokenizer", "none", *extra])


# ---------------------------------------------------------------- the module itself

def test_finish_then_verify_then_any_change_is_refused(tmp_path):
    out = tmp_path / "e"
    EvalDir.start(out)
    pd.DataFrame({"pair_id": ["a", "b"], "correct": [True, False]}).to_parquet(out / EvalDir.PER_PAIR)
    (out / EvalDir.METRICS).write_text("{}")
    EvalDir.finish(out, config={})
    manifest = EvalDir.verify(out)
    assert manifest["complete"] is True and manifest["stage"] == "evaluate"
    assert set(manifest["outputs"]) == {EvalDir.PER_PAIR, EvalDir.METRICS}
    assert manifest["outputs"][EvalDir.METRICS] == {"bytes": 2, "sha256": dirs.artifacts.text_sha256("{}")}
    (out / EvalDir.METRICS).write_text("[]")  # same size, other content
    with pytest.raises(StageDirError, match="metrics.json differs from the sha256"):
        EvalDir.verify(out)
    (out / EvalDir.METRICS).write_text("{ }")
    with pytest.raises(StageDirError, match="has 3 bytes, the manifest says 2"):
        EvalDir.verify(out)
    with pytest.raises(StageDirError, match="a 'evaluate' directory, not a train one"):
        RunDir.verify(out)
    (out / dirs.MANIFEST).unlink()
    with pytest.raises(StageDirError, match="incomplete evaluate directory.*interrupted.*rerun `pairlab evaluate"):
        EvalDir.verify(out)
    with pytest.raises(StageDirError, match="no manifest.json"):
        EvalDir.verify(tmp_path)


def test_a_manifest_without_hashes_is_refused(tmp_path):
    dirs.artifacts.write_manifest(tmp_path, stage="train", config={})  # an older pairlab, or by hand
    with pytest.raises(StageDirError, match="does not list its outputs' hashes"):
        RunDir.verify(tmp_path)


def test_an_interrupted_run_says_resume(tmp_path):
    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(StageDirError, match=r"incomplete train directory.*--resume"):
        RunDir.verify(tmp_path)
    assert RunDir.prepare(tmp_path) == "incomplete"


def test_prepare_rules(tmp_path):
    src = tmp_path / "in" / "pairs.parquet"
    src.parent.mkdir()
    src.write_bytes(b"x")
    with pytest.raises(StageDirError, match="--out is the input"):
        CurateDir.prepare(src, inputs=[src])
    with pytest.raises(StageDirError, match="--out contains the input"):
        CurateDir.prepare(src.parent, inputs=[src])
    with pytest.raises(StageDirError, match="exists and is not a directory"):
        CurateDir.prepare(src)
    assert CurateDir.prepare(tmp_path / "new") == "new"
    with pytest.raises(StageDirError, match="holds pairs.parquet and no manifest.json: not written by"):
        CurateDir.prepare(src.parent)  # a user's own pairs.parquet is never deleted
    run = tmp_path / "run"
    RunDir.start(run)
    (run / RunDir.TRAIN_LOG).write_text("")
    (run / RunDir.DYNAMICS).write_text("")
    RunDir.finish(run, config={})
    with pytest.raises(StageDirError, match="holds a 'train' directory"):
        CurateDir.prepare(run, overwrite=True)
    with pytest.raises(StageDirError, match="already holds a finished train directory.*--overwrite"):
        RunDir.prepare(run)
    assert RunDir.prepare(run, resume=True) == "complete"
    (run / dirs.MANIFEST).unlink()
    with pytest.raises(StageDirError, match=r"interrupted `pairlab train` \(train_log.jsonl\)"):
        EvalDir.prepare(run)


def test_clean_removes_only_what_the_stage_owns(tmp_path):
    out = tmp_path / "cur"
    out.mkdir()
    for name in (*CurateDir.OUTPUTS, CurateDir.REPORT, "report.json", "notes.txt", ".pairs.parquet.x1.tmp"):
        (out / name).write_text("old")
    (out / "mine").mkdir()
    assert CurateDir.prepare(out) == "incomplete"
    CurateDir.start(out)
    assert sorted(p.name for p in out.iterdir()) == [f"{dirs.STARTED}.curate", "mine", "notes.txt"]
    assert dirs.started_by(out) == "curate"


def test_debris_of_a_shared_file_name_is_told_by_its_start_marker(tmp_path):
    """`pairs.parquet` is written by curate and by simulate --from: a run killed while its
    first temp file existed is still named by the stage that started it."""
    from pairlab.dirs import NoiseDir

    for kind, other in ((CurateDir, NoiseDir), (NoiseDir, CurateDir)):
        out = tmp_path / kind.STAGE
        kind.start(out)
        (out / ".pairs.parquet.x1.tmp").write_text("half")
        with pytest.raises(StageDirError, match=f"incomplete {kind.STAGE} directory"):
            dirs.verify(out)
        with pytest.raises(StageDirError, match=f"incomplete {kind.STAGE} directory"):
            dirs.check_input_file(out)
        assert kind.prepare(out) == "incomplete"
        with pytest.raises(StageDirError, match=r"interrupted `pairlab (curate|simulate --from)` directory"):
            other.prepare(out)
        (out / kind.PAIRS).write_text("x")
        (out / ".pairs.parquet.x1.tmp").unlink()
        kind.finish(out, config={})
        assert dirs.started_by(out) is None and dirs.start_markers(out) == []


# ---------------------------------------------------------------- the reproductions of issue 16

def test_convert_refuses_its_own_input_and_an_existing_file(tmp_path, capsys):
    from pairlab.simulate import SimulateConfig, write_simulation

    write_simulation(SimulateConfig(n=12, seed=0), tmp_path / "sim")
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes((tmp_path / "sim" / "train.jsonl").read_bytes())
    before = raw.read_bytes()
    assert main(["convert", "--input", str(raw), "--out", str(raw)]) == 2
    err = capsys.readouterr().err
    assert "--out is the input" in err and "Traceback" not in err
    assert raw.read_bytes() == before
    out = tmp_path / "pairs.parquet"
    assert main(["convert", "--input", str(raw), "--out", str(out)]) == 0
    assert main(["convert", "--input", str(raw), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "--input", str(raw), "--out", str(out), "--overwrite"]) == 0
    assert main(["convert", "--input", str(raw), "--out", str(tmp_path / "sim"), "--overwrite"]) == 2
    assert "stage directory" in capsys.readouterr().err


def test_curate_refuses_an_out_holding_its_input(tmp_path, pool, capsys):
    src = _pool_file(tmp_path / "pool", pool)
    before = src.read_bytes()
    assert _curate(src, src.parent, "--filters", "/dev/null") == 2
    assert "--out contains the input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_evaluate_refuses_writing_into_its_run(tmp_path, capsys):
    run = tmp_path / "run"  # the files evaluate checks, as `pairlab train` finishes them
    (run / RunDir.ADAPTER).mkdir(parents=True)
    (run / RunDir.ADAPTER / "adapter_config.json").write_text("{}")
    (run / RunDir.TRAIN_LOG).write_text("")
    (run / RunDir.DYNAMICS).write_text("")
    RunDir.finish(run, config={"model": "tiny-random-llama"})
    before = (run / dirs.MANIFEST).read_bytes()
    assert main(["evaluate", "--run", str(run), "--eval", str(tmp_path / "e.jsonl"), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--out is the input" in err and "Traceback" not in err
    assert (run / dirs.MANIFEST).read_bytes() == before
    assert main(["evaluate", "--run", str(run), "--eval", str(tmp_path / "e.jsonl"),
                 "--out", str(tmp_path)]) == 2  # contains the run
    assert "--out contains the input" in capsys.readouterr().err


def test_recurate_needs_overwrite_and_leaves_no_stale_report(tmp_path, pool, capsys):
    src = _pool_file(tmp_path, pool)
    out = tmp_path / "cur"
    assert _curate(src, out) == 0
    assert (out / CurateDir.REPORT).exists()
    first = json.loads((out / dirs.MANIFEST).read_text())
    assert set(first["outputs"]) == set(CurateDir.OUTPUTS) and first["report"] == CurateDir.REPORT
    assert _curate(src, out, "--no-report") == 2
    assert "already holds a finished curate directory" in capsys.readouterr().err
    assert _curate(src, out, "--no-report", "--overwrite") == 0
    assert not (out / CurateDir.REPORT).exists()  # the previous run's report does not survive
    assert json.loads((out / dirs.MANIFEST).read_text())["report"] is None
    CurateDir.verify(out)


def test_train_and_reports_refuse_a_curation_without_manifest(tmp_path, pool, capsys):
    from pairlab.reports import render_report
    from pairlab.train.pipeline import read_train_pairs

    src = _pool_file(tmp_path, pool)
    out = tmp_path / "cur"
    assert _curate(src, out) == 0
    (out / dirs.MANIFEST).unlink()  # what a kill before the manifest leaves
    for reader in (lambda: read_train_pairs(out), lambda: read_train_pairs(out / CurateDir.PAIRS),
                   lambda: render_report(out)):
        with pytest.raises(StageDirError, match="incomplete curate directory"):
            reader()
    assert main(["train", "--pairs", str(out / CurateDir.PAIRS), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "incomplete curate directory" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert main(["curate", "--input", str(out / CurateDir.EVAL), "--out", str(tmp_path / "c2"),
                 "--tokenizer", "none"]) == 2
    assert "incomplete curate directory" in capsys.readouterr().err
    assert _curate(src, out) == 0  # a rerun cleans the debris and completes without --overwrite
    assert len(read_train_pairs(out)[0]) == json.loads((out / dirs.MANIFEST).read_text())["counts"]["train"]


def test_a_curation_changed_after_it_finished_is_refused(tmp_path, pool):
    from pairlab.train.pipeline import read_train_pairs

    src = _pool_file(tmp_path, pool)
    out = tmp_path / "cur"
    assert _curate(src, out) == 0
    pairs = pd.read_parquet(out / CurateDir.PAIRS)
    pairs.head(3).to_parquet(out / CurateDir.PAIRS)  # the new pairs beside the old manifest
    with pytest.raises(StageDirError, match="pairs.parquet has .* bytes, the manifest says"):
        read_train_pairs(out)


def test_simulate_refuses_another_stage_and_a_finished_one(tmp_path, pool, capsys):
    src = _pool_file(tmp_path, pool)
    assert _curate(src, tmp_path / "cur") == 0
    assert main(["simulate", "--n", "12", "--out", str(tmp_path / "cur")]) == 2
    assert "holds a 'curate' directory" in capsys.readouterr().err
    assert main(["simulate", "--n", "12", "--out", str(tmp_path / "sim")]) == 0
    assert main(["simulate", "--n", "12", "--out", str(tmp_path / "sim")]) == 2
    assert main(["simulate", "--n", "12", "--seed", "1", "--out", str(tmp_path / "sim"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "sim" / dirs.MANIFEST).read_text())["seed"] == 1
    dirs.SimulateDir.verify(tmp_path / "sim")


def test_the_same_rows_write_the_same_bytes_whatever_their_attrs(tmp_path):
    """pandas stores df.attrs in Parquet metadata; a simulation leaves its temporary file's path
    there, so each resume rewrote the suite's LossDiff pairs with another sha256 and retrained
    the validation policy. Stage files now drop incidental attrs (`pairlab convert` keeps its
    read statistics through write_pairs)."""
    from pairlab import artifacts
    from pairlab.audit.suite import SuiteConfig, validate_config
    from pairlab.audit.validate import _write_train_pairs, simulate_data, split_held_out

    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    one, two = frame.copy(), frame.copy()
    one.attrs["read_stats"] = {"spec": "/tmp/pairlab-sim-aaa/eval.jsonl"}
    two.attrs["read_stats"] = {"spec": "/tmp/pairlab-sim-bbb/eval.jsonl"}
    assert artifacts.write_parquet(tmp_path / "1.parquet", one).read_bytes() == \
        artifacts.write_parquet(tmp_path / "2.parquet", two).read_bytes()
    assert one.attrs["read_stats"]["spec"].endswith("aaa/eval.jsonl")  # the caller's frame keeps them
    kept = artifacts.write_parquet(tmp_path / "3.parquet", one, keep_attrs=True)
    assert pd.read_parquet(kept).attrs == one.attrs

    vcfg = validate_config(SuiteConfig(noise_types=["length"]).validate(), "length", 0)
    shas = []
    for _ in range(2):  # two simulations of the same config: the suite's first run and its resume
        _, held = simulate_data(vcfg)
        val, _ = split_held_out(held, vcfg.n_val)
        assert val.attrs  # what made the bytes differ
        shas.append(artifacts.file_sha256(_write_train_pairs(val, tmp_path / "val-run")))
    assert shas[0] == shas[1]
    # a file an older pairlab wrote (attrs included) holding the same rows is kept, not rewritten
    old = tmp_path / "old" / "pairs.parquet"
    old.parent.mkdir()
    val.to_parquet(old, index=False)
    before = artifacts.file_sha256(old)
    assert artifacts.file_sha256(_write_train_pairs(val, old.parent)) == before
    assert artifacts.file_sha256(_write_train_pairs(val.iloc[1:], old.parent)) != before  # other rows: rewritten


def test_the_start_marker_names_its_stage_the_instant_it_exists(tmp_path):
    """The stage is in the marker's file name, not its content: there is no instant at which a
    started directory holds a marker that names no stage (a kill between creating a file and
    writing it left an empty one before)."""
    from pairlab.dirs import NoiseDir

    for kind in (CurateDir, NoiseDir, RunDir):
        out = tmp_path / kind.STAGE
        kind.start(out)
        assert [p.name for p in out.iterdir()] == [dirs.marker_path(out, kind.STAGE).name]
        assert dirs.marker_path(out, kind.STAGE).stat().st_size == 0
        assert dirs.started_by(out) == kind.STAGE
        with pytest.raises(StageDirError, match=f"incomplete {kind.STAGE} directory"):
            dirs.verify(out)
    # an earlier pairlab's marker (the stage written into it) is still read
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / dirs.STARTED).write_text("curate\n")
    assert dirs.started_by(legacy) == "curate" and CurateDir.prepare(legacy) == "incomplete"
    CurateDir.start(legacy)
    (legacy / CurateDir.PAIRS).write_text("x")
    CurateDir.finish(legacy, config={})
    assert dirs.start_markers(legacy) == [] and dirs.started_by(legacy) is None


def test_a_start_marker_that_names_no_stage_is_refused_everywhere(tmp_path):
    """An earlier pairlab killed between creating ``.pairlab-started`` and writing its stage
    left it empty: every reader and writer says it is interrupted; none takes it for a data
    folder, and none cleans it (nothing says whose files it holds)."""
    from pairlab.reports import render_report

    out = tmp_path / "killed"
    out.mkdir()
    (out / dirs.STARTED).write_text("")
    (out / "pairs.parquet").write_text("half")
    assert dirs.started_by(out) == dirs.UNKNOWN_STAGE and dirs.is_unfinished(out)
    for read in (render_report, dirs.verify, dirs.check_input_file, CurateDir.verify,
                 lambda p: dirs.check_input_file(p / "pairs.parquet")):
        with pytest.raises(StageDirError, match="interrupted pairlab directory"):
            read(out)
    with pytest.raises(StageDirError, match="interrupted pairlab directory whose stage is unknown"):
        CurateDir.prepare(out)
    assert sorted(p.name for p in out.iterdir()) == [dirs.STARTED, "pairs.parquet"]


def test_a_table_hashes_the_same_in_memory_and_read_back(tmp_path):
    """Parquet reads list cells back as numpy arrays; a one-element array once hashed as its
    scalar (``ndarray.item()``), so a one-message prompt changed the hash and a cache keyed on
    it (the audit's gradients) missed on every read-back copy."""
    import numpy as np

    from pairlab import artifacts

    df = pd.DataFrame({"pair_id": ["a", "b"], "prompt": [["one turn"], ["two", "turns"]],
                       "chosen": ["x", "y"], "n": [1, 2]})
    path = artifacts.write_parquet(tmp_path / "t.parquet", df)
    back = pd.read_parquet(path)
    assert isinstance(back["prompt"][0], np.ndarray)
    assert artifacts.frame_sha256(back) == artifacts.frame_sha256(df)
    assert artifacts.frame_sha256(back.iloc[::-1]) != artifacts.frame_sha256(df)  # row order matters
    changed = df.copy()
    changed.at[0, "prompt"] = ["one turn", "more"]
    assert artifacts.frame_sha256(changed) != artifacts.frame_sha256(df)
    assert json.loads(artifacts.to_json({"v": np.array(["only"])})) == {"v": ["only"]}
    assert json.loads(artifacts.to_json({"v": np.float32(0.5)})) == {"v": 0.5}


def test_no_command_writes_inside_another_stage_directory(tmp_path, pool, capsys):
    """Every output flag is refused inside a finished or interrupted stage directory (before
    anything is read or written), except an ablation's own arms/ and base/ (its --plan commands)."""
    src = _pool_file(tmp_path, pool)
    cur = tmp_path / "cur"
    assert _curate(src, cur) == 0
    killed = tmp_path / "killed"
    dirs.RunDir.mark_started(killed)  # a train killed at its first step
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    before = {p.name: p.read_bytes() for p in cur.iterdir() if p.is_file()}
    for parent in (cur, killed):
        commands = [
            ["convert", "--input", str(src), "--out", str(parent / "pairs.parquet"), "--overwrite"],
            ["convert", "--input", str(src), "--out", str(tmp_path / "ok.parquet"), "--rejects", str(parent / "r.jsonl")],
            ["simulate", "--out", str(parent / "sim")],
            ["simulate", "--from", str(src), "--out", str(parent / "noisy")],
            ["curate", "--input", str(src), "--out", str(parent / "sub")],
            ["train", "--pairs", str(cur), "--out", str(parent / "run")],
            ["evaluate", "--model", "tiny-random-llama", "--eval", str(src), "--out", str(parent / "ev")],
            ["compare", str(cur), str(cur), "--out", str(parent / "cmp")],
            ["audit", "--run", str(cur), "--eval", str(src), "--out", str(parent / "audit")],
            ["ablate", "--config", str(cfg), "--out", str(parent / "abl")],
            ["export", str(cur), "--out", str(parent / "export")],
            ["report", str(cur), "--out", str(parent / "deep" / "report.html")],
        ]
        for argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "lies inside" in err and "Traceback" not in err, (argv, err)
            assert err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in cur.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in killed.iterdir()) == [".pairlab-started.train"]
    # an ablation's own layout is where its --plan commands write
    abl = tmp_path / "abl"
    dirs.AblationDir.mark_started(abl)
    dirs.check_out_location(abl / "arms" / "a" / "seed0" / "run")
    dirs.check_out_location(abl / "base" / "eval")
    with pytest.raises(StageDirError, match="lies inside the ablate directory"):
        dirs.check_out_location(abl / "mine")


def test_an_output_flag_is_never_an_input(tmp_path, pool, capsys):
    """Not the config file, not around a data input (checked for every command, before anything runs)."""
    src = _pool_file(tmp_path, pool)
    cfg = tmp_path / "abl.yaml"
    cfg.write_text("arms: []\n")
    cfg_text = cfg.read_text()
    assert main(["ablate", "--config", str(cfg), "--out", str(cfg)]) == 2
    assert "is the config file" in capsys.readouterr().err
    assert main(["train", "--pairs", str(src), "--out", str(tmp_path)]) == 2
    assert "contains the input" in capsys.readouterr().err
    assert cfg.read_text() == cfg_text and src.exists()


def test_an_out_under_a_file_is_refused_before_anything_runs(tmp_path):
    """`--out a_file/run` is refused by the stage's own check, before a model loads (it failed
    later, in mkdir, after the tokenizer and a first-use model build)."""
    from pairlab.dirs import STAGE_DIRS, StageDirError

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for stage in STAGE_DIRS.values():
        with pytest.raises(StageDirError, match=f"{afile} is a file, not a directory"):
            stage.prepare(afile / "deeper" / "run")
    assert afile.read_text() == "not a folder"
