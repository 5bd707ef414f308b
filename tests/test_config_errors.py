"""Config and flag values that used to pass the loader and fail later (a traceback, or an error
only after the model loaded): each is now one line, exit 2, naming the field and where it was
set (the YAML file or the --set), before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairlab.cli import main

PAIR = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5.", "score_chosen": 5, "score_rejected": 1}


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cfgerr")
    good = root / "good.jsonl"
    good.write_text("".join(json.dumps({**PAIR, "prompt": f"q{i}?"}) + "\n" for i in range(6)))
    files = {"good": good, "out": root / "out"}
    for name, text in {"model_null": "model: null\n", "dpo_null": "dpo: null\n", "lora_null": "lora: null\n",
                       "beta_ok": "dpo:\n  beta: 0.2\n", "arm_no_name": "arms:\n  - filters: []\n",
                       "topics": "topics:\n  arithmetic: {x: 1}\n",
                       "dup_key": "dpo:\n  beta: 0.1\n  learning_rate: 1.0e-4\n  beta: 0.5\n",
                       "abl_noise": "pool:\n  simulate: {n: 40}\n  noise: gaussian\narms:\n  - name: all\n",
                       "abl_seeds": "pool:\n  simulate: {n: 40}\nseeds: [0, 0]\narms:\n  - name: all\n",
                       "abl_loss": "pool:\n  simulate: {n: 40}\narms:\n  - name: all\n    train:\n"
                                   "      dpo: {loss_type: sigmod}\n",
                       "abl_sample0": "pool:\n  simulate: {n: 40}\narms:\n  - name: all\n    filters:\n"
                                      "      - sample: {n: 0}\n",
                       "abl_ok": "pool:\n  simulate: {n: 40}\narms:\n  - name: all\n"}.items():
        files[name] = root / f"{name}.yaml"
        files[name].write_text(text)
    bad_model = root / "bad-model"
    bad_model.mkdir()
    (bad_model / "config.json").write_text('{"model_type": "llama"}')  # no tokenizer, no weights
    files["bad_model"] = bad_model
    (root / "adir").mkdir()
    files["adir"] = root / "adir"
    return files


TRAIN = "train --pairs {good} --out {out}"
EVAL = "evaluate --model tiny-random-llama --eval {good} --out {out}"
CASES = [
    # (id, argv, text the one line must hold)
    ("model-null-in-yaml", TRAIN + " --config {model_null}", ["model_null.yaml", "field 'model'", "must not be null"]),
    ("model-null-by-set", TRAIN + " --set model=", ["field 'model'", "must not be null"]),
    ("dpo-null", TRAIN + " --config {dpo_null}", ["field 'dpo'", "must not be null"]),
    ("lora-null", TRAIN + " --config {lora_null}", ["field 'lora'", "must not be null"]),
    ("lora-r-bool", TRAIN + " --set lora.r=true", ["field 'lora.r'", "expected int"]),
    ("lora-no-modules", TRAIN + " --set lora.target_modules=[]", ["lora.target_modules", "no modules"]),
    # only the loaded model can tell: refused after the start, and the start undone (not an "interrupted run")
    ("lora-modules-unknown", TRAIN + " --model tiny-random-llama --set lora.target_modules=[nope_proj]",
     ["lora.target_modules", "nope_proj"]),
    ("lora-modules-number", TRAIN + " --model tiny-random-llama --set lora.target_modules=5",
     ["lora.target_modules", "Target modules 5 not found"]),
    ("beta-null", TRAIN + " --set dpo.beta=", ["dpo.beta", "must not be null"]),
    ("set-blamed-not-the-file", TRAIN + " --config {beta_ok} --set dpo.beta=-1", ["dpo.beta", "> 0", "!beta_ok.yaml"]),
    ("loss-type-number", TRAIN + " --set dpo.loss_type=1", ["dpo.loss_type", "expected a loss name"]),
    ("report-to-number", TRAIN + " --set dpo.report_to=5", ["dpo.report_to", "expected a logger name"]),
    ("truncation-middle", TRAIN + " --set dpo.truncation_mode=middle", ["dpo.truncation_mode", "'middle'"]),
    ("loss-type-typo", TRAIN + " --set dpo.loss_type=sigmod", ["dpo.loss_type", "did you mean 'sigmoid'"]),
    ("loss-type-list", TRAIN + " --set dpo.loss_type=[sigmoid,nope]", ["dpo.loss_type", "'nope'"]),
    ("grad-accum-fraction", TRAIN + " --set dpo.gradient_accumulation_steps=1.5", ["whole number", "1.5"]),
    ("max-steps-text", TRAIN + " --set dpo.max_steps=[1]", ["dpo.max_steps", "expected a number"]),
    ("train-device", TRAIN + " --set device=tpu", ["field 'device'", "'tpu'"]),
    ("wandb-no-login", TRAIN + " --set dpo.report_to=wandb", ["dpo.report_to", "WANDB_MODE=offline"]),
    ("empty-model", "evaluate --model= --eval {good} --out {out}", ["field 'model'", "empty model spec"]),
    ("model-dir-without-tokenizer", TRAIN + " --model {bad_model}", ["bad-model", "cannot load tokenizer"]),
    ("eval-batch-null", EVAL + " --set batch_size=null", ["batch_size", "must not be null"]),
    ("eval-device", EVAL + " --set device=tpu", ["field 'device'", "'tpu'"]),
    ("audit-harmful-score", "audit --run {good} --eval {good} --out {out} --set harmful_score=nope",
     ["field 'harmful_score'", "'nope'"]),
    ("ablate-arm-without-name", "ablate --config {arm_no_name} --out {out}", ["arms[0].name", "missing required key"]),
    ("simulate-topic-mapping", "simulate --out {out} --config {topics}", ["topics.arithmetic", "expected float"]),
    ("compare-n-boot-0", "compare {good} {good} --n-boot 0", ["--n-boot", ">= 1"]),
    ("compare-negative-seed", "compare {good} {good} --seed -1", ["--seed", ">= 0"]),
    ("power-negative-arms", "power --target-diff 0.1 --arms -1", ["--arms", ">= 2"]),
    ("power-zero-steps", "power --target-diff 0.1 --steps 0", ["--steps", "> 0"]),
    ("power-negative-pairs", "power --target-diff 0.1 --eval-pairs -3", ["--eval-pairs", ">= 1"]),
    ("power-missing-timings", "power --target-diff 0.1 --timings {out}", ["--timings", "no such directory"]),
    ("unknown-flag", "power --target-diff 0.1 --bogus", ["unrecognized arguments: --bogus"]),
    ("yaml-duplicate-key", TRAIN + " --config {dup_key}", ["dup_key.yaml, line 4", "'beta' given twice (first on line 2)"]),
    ("ablate-unknown-noise", "ablate --config {abl_noise} --out {out} --plan", ["abl_noise.yaml", "pool.noise", "'gaussian'"]),
    ("ablate-repeated-seed", "ablate --config {abl_seeds} --out {out} --plan", ["abl_seeds.yaml", "'seeds'", "twice"]),
    ("ablate-arm-train-error-names-arm-and-file", "ablate --config {abl_loss} --out {out} --plan",
     ["abl_loss.yaml", "arms.all.train.dpo.loss_type", "'sigmod'"]),
    ("ablate-sample-of-none", "ablate --config {abl_sample0} --out {out} --plan", ["sample.n", ">= 1, got 0"]),
    ("ablate-set-in-shared-train-not-blamed-on-file",
     "ablate --config {abl_ok} --out {out} --plan --set train.dpo.beta=-1", ["arms.all.train.dpo.beta", "!abl_ok.yaml"]),
    ("ablate-task-without-step", "ablate --config {abl_ok} --out {out} --task 3", ["--task", "--step arm"]),
    ("report-out-is-a-directory", "report {good} --out {adir}", ["adir", "is a directory", "out.html"]),
    ("convert-out-is-a-directory", "convert --input {good} --out {adir} --overwrite", ["adir", "is a directory"]),
    ("audit-validate-with-run", "audit --validate --run {good} --out {out}", ["--run", "does not apply to --validate"]),
    ("audit-quick-without-validate", "audit --run {good} --eval {good} --quick --out {out}",
     ["--quick", "only with --validate"]),
]


@pytest.mark.parametrize("case_id, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_a_bad_value_is_one_line_naming_it(case_id, argv, expected, w, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(w["out"] / "no-netrc"))
    out = w["out"] / case_id
    args = [a.format(out=out, **{k: v for k, v in w.items() if k != "out"}) for a in argv.split()]
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pairlab")]  # (torch's import warnings aside)
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and ": error: " in lines[0], err
    for text in expected:
        if text.startswith("!"):
            assert text[1:] not in lines[0], f"{text[1:]!r} in {lines[0]!r}"
        else:
            assert text.format(**w) in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not out.exists(), "a refused command wrote output"


def test_a_stage_directory_given_as_pairs_reads_its_file_for_the_role(tmp_path, capsys):
    """`--eval CUR` reads CUR/eval.parquet, `--input CUR` CUR/pairs.parquet (said on stderr); an
    evaluation directory holds no pairs and is refused; `compare` refuses one directory twice."""
    from pairlab.dirs import CurateDir, EvalDir

    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({**PAIR, "prompt": f"q{i}?"}) + "\n" for i in range(20)))
    cur = tmp_path / "cur"
    assert main(["curate", "--input", str(good), "--out", str(cur), "--tokenizer", "none",
                 "--set", "eval_fraction=0.25"]) == 0
    capsys.readouterr()
    assert main(["inspect", "--input", str(cur), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"reading {cur / CurateDir.PAIRS}" in captured.err
    assert json.loads(captured.out)["rows"] == 15
    assert main(["inspect", str(cur), "--json"]) == 0  # SPEC alone is the same as --input SPEC
    captured = capsys.readouterr()
    assert f"reading {cur / CurateDir.PAIRS}" in captured.err and json.loads(captured.out)["rows"] == 15
    assert main(["convert", str(cur), "--out", str(cur / CurateDir.PAIRS), "--overwrite"]) == 2  # never its input
    capsys.readouterr()
    assert main(["inspect", "--input", str(cur), "--eval", "x"]) == 2  # (argparse: no --eval on inspect)
    capsys.readouterr()
    assert main(["simulate", "--from", str(cur), "--flip-rate", "0.5", "--out", str(tmp_path / "noisy")]) == 0
    assert "training pairs" in capsys.readouterr().err
    ev = tmp_path / "ev"
    EvalDir.mark_started(ev)
    (ev / EvalDir.PER_PAIR).write_bytes(b"")
    (ev / EvalDir.METRICS).write_text("{}")
    EvalDir.finish(ev, config={})
    assert main(["evaluate", "--model", "tiny-random-llama", "--eval", str(ev), "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "holds no held-out pairs" in err and "--eval" in err
    assert main(["compare", str(ev), str(ev)]) == 2
    assert "given twice" in capsys.readouterr().err
    none_held = tmp_path / "cur0"  # curate with eval_fraction 0 writes an empty eval.parquet
    assert main(["curate", "--input", str(good), "--out", str(none_held), "--tokenizer", "none",
                 "--set", "eval_fraction=0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", "tiny-random-llama", "--eval", str(none_held),
                 "--out", str(tmp_path / "e3")]) == 2
    err = capsys.readouterr().err
    assert "0 rows" in err and "--eval-fraction" in err and "Traceback" not in err, err
    assert not (tmp_path / "e3").exists()


def test_values_trl_allows_to_be_null_stay_allowed():
    """`dpo.max_length: null` is TRL's "no truncation"; only fields that need a value refuse null."""
    from pairlab.train.config import load_train_config

    assert load_train_config(None, ["dpo.max_length=null", "dpo.pad_to_multiple_of=null"]).dpo["max_length"] is None


def test_the_output_check_never_lists_a_parent_directory(tmp_path, monkeypatch):
    """On a cluster a parent (/scratch, /home) may be enterable but not listable (mode 0711): the
    check looks markers up by name. (The tests run as root, which ignores modes, so listing is
    made to fail instead.)"""
    import pathlib

    from pairlab import dirs

    killed = tmp_path / "killed"
    dirs.CurateDir.mark_started(killed)

    def unlistable(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "iterdir", unlistable)
    dirs.check_out_location(tmp_path / "fresh" / "out")  # no parent is a stage directory
    with pytest.raises(dirs.StageDirError, match="lies inside the curate directory"):
        dirs.check_out_location(killed / "sub")
