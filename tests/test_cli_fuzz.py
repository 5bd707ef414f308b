"""No traceback for a user error, ever: every command with bad paths, unwritable outputs,
bad encodings, malformed ``--set`` values and bad config values exits 2 with one line
naming the file / line / field. An internal error (a bug) is the opposite: its traceback
and a request to report it, exit 1.

Commands run in-process through ``pairlab.cli.main`` (fast); a few run as subprocesses
to show that nothing else reaches the real stderr. Tests run as root, which ignores file
modes, so "unwritable" outputs are paths under a regular file (``afile/out``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pairlab.cli import build_parser, main

PAIR = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5.", "score_chosen": 5, "score_rejected": 1}


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The files the cases point at (``w[name]``); ``out`` is a fresh directory for outputs."""
    root = tmp_path_factory.mktemp("fuzz")
    good = root / "good.jsonl"
    good.write_text("".join(json.dumps({**PAIR, "prompt": f"q{i}?"}) + "\n" for i in range(6)))
    files = {
        "good": good,
        # line 2 holds a Latin-1 byte: invalid UTF-8
        "bad_utf8": root / "bad_utf8.jsonl", "all_bad_utf8": root / "all_bad_utf8.jsonl",
        "bad_utf8_yaml": root / "bad_utf8.yaml", "bad_yaml": root / "bad.yaml", "bad_utf8_txt": root / "bad_utf8.txt",
        "afile": root / "afile", "adir": root / "adir", "missing": root / "missing.jsonl",
        "nan_filters": root / "nan_filters.yaml", "ablation_bad_beta": root / "ablation_bad_beta.yaml",
        "ablation": root / "ablation.yaml", "out": root / "out",
    }
    files["bad_utf8"].write_bytes(good.read_bytes().splitlines(True)[0]
                                  + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    files["all_bad_utf8"].write_bytes(b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    files["bad_utf8_yaml"].write_bytes(b"n: 10\nlength: caf\xe9\n")
    files["bad_yaml"].write_text("n: [10\nlength: short\n")
    files["bad_utf8_txt"].write_bytes(b"What is 2 + 2?\nCaf\xe9 au lait?\n")
    files["afile"].write_text("a regular file\n")
    files["adir"].mkdir()
    files["nan_filters"].write_text("- drop_ties\n- min_rating_gap: .nan\n")
    arms = "arms: [{name: all, filters: []}]\n"
    files["ablation"].write_text(f"pool: {{input: {good}}}\n{arms}train: {{model: tiny-random-llama}}\n")
    files["ablation_bad_beta"].write_text(
        f"pool: {{input: {good}}}\n{arms}train: {{model: tiny-random-llama, dpo: {{beta: -1}}}}\n")
    files["out"].mkdir()
    return files


# (id, argv with {name} placeholders for w[name] and {out} for a fresh output path, expected texts)
CASES = [
    # convert
    ("convert-missing-input", "convert --input {missing} --out {out}/c.parquet", ["{missing}", "no such file"]),
    ("convert-bad-utf8", "convert --input {bad_utf8} --strict --out {out}/c.parquet", ["{bad_utf8}", "line 2", "UTF-8"]),
    ("convert-out-under-a-file", "convert --input {good} --out {afile}/c.parquet", ["{afile}", "not a directory"]),
    ("convert-out-is-a-directory", "convert --input {good} --out {adir}", ["{adir}", "--out"]),
    ("convert-empty-directory-input", "convert --input {adir} --out {out}/c.parquet", ["{adir}"]),
    # inspect
    ("inspect-bad-utf8", "inspect --input {bad_utf8} --strict", ["{bad_utf8}", "line 2"]),
    ("inspect-file-of-unknown-type", "inspect --input {afile}", ["{afile}"]),
    ("inspect-missing", "inspect --input {missing}", ["{missing}"]),
    # simulate
    ("simulate-out-is-a-file", "simulate --n 10 --out {afile}", ["{afile}", "--out"]),
    ("simulate-out-under-a-file", "simulate --n 10 --out {afile}/sim", ["{afile}", "not a directory"]),
    ("simulate-malformed-set", "simulate --n 10 --out {out} --set tie_rate=[1", ["tie_rate", "cannot parse"]),
    ("simulate-nan-rate", "simulate --n 10 --out {out} --set tie_rate=.nan", ["tie_rate", "finite"]),
    ("simulate-rate-out-of-range", "simulate --n 10 --out {out} --tie-rate 1.5", ["tie_rate", "[0, 1]"]),
    ("simulate-config-bad-utf8", "simulate --out {out} --config {bad_utf8_yaml}", ["{bad_utf8_yaml}", "line 2", "UTF-8"]),
    ("simulate-config-bad-yaml", "simulate --out {out} --config {bad_yaml}", ["{bad_yaml}", "line 2", "invalid YAML"]),
    ("simulate-config-is-a-directory", "simulate --out {out} --config {adir}", ["{adir}", "directory"]),
    ("simulate-from-bad-utf8", "simulate --out {out} --from {bad_utf8} --strict --flip-rate 0.1", ["{bad_utf8}", "line 2"]),
    # curate
    ("curate-out-is-a-file", "curate --input {good} --tokenizer none --out {afile}", ["{afile}", "--out"]),
    ("curate-out-under-a-file", "curate --input {good} --tokenizer none --out {afile}/cur", ["{afile}", "not a directory"]),
    ("curate-filters-is-a-directory", "curate --input {good} --tokenizer none --out {out} --filters {adir}", ["{adir}"]),
    ("curate-nan-filter", "curate --input {good} --tokenizer none --out {out} --filters {nan_filters}",
     ["{nan_filters}", "filters[1].min_rating_gap", "nan"]),
    ("curate-filters-bad-utf8", "curate --input {good} --tokenizer none --out {out} --filters {bad_utf8_yaml}",
     ["{bad_utf8_yaml}", "line 2"]),
    ("curate-malformed-set", "curate --input {good} --tokenizer none --out {out} --set seed=[1", ["seed", "cannot parse"]),
    ("curate-set-without-value", "curate --input {good} --tokenizer none --out {out} --set seed", ["seed", "key=value"]),
    ("curate-nan-threshold", "curate --input {good} --tokenizer none --out {out} --set near_dup_threshold=.nan",
     ["near_dup_threshold", "finite"]),
    ("curate-bad-utf8-input", "curate --input {bad_utf8} --strict --tokenizer none --out {out}", ["{bad_utf8}", "line 2"]),
    ("curate-contamination-file-bad-utf8", "curate --input {good} --tokenizer none --out {out} --contamination-file {bad_utf8_txt}",
     ["{bad_utf8_txt}", "line 2", "UTF-8"]),
    ("curate-missing-contamination-file", "curate --input {good} --tokenizer none --out {out} --contamination-file {missing}",
     ["{missing}", "contamination_file"]),
    # train (all refused before any model loads)
    ("train-missing-pairs", "train --pairs {missing} --model tiny-random-llama --out {out}", ["{missing}"]),
    ("train-negative-beta", "train --pairs {good} --out {out} --set dpo.beta=-1", ["dpo.beta", "> 0"]),
    ("train-negative-lora-rank", "train --pairs {good} --out {out} --set lora.r=-4", ["lora.r", ">= 1"]),
    ("train-malformed-set", "train --pairs {good} --out {out} --set dpo.beta=[1", ["dpo.beta", "cannot parse"]),
    ("train-config-bad-utf8", "train --pairs {good} --out {out} --config {bad_utf8_yaml}", ["{bad_utf8_yaml}", "line 2"]),
    ("train-out-under-a-file", "train --pairs {good} --model tiny-random-llama --out {afile}/run", ["{afile}"]),
    ("train-pairs-bad-utf8", "train --pairs {all_bad_utf8} --model tiny-random-llama --out {out}", ["{all_bad_utf8}", "line 1"]),
    # evaluate
    ("evaluate-missing-run", "evaluate --run {missing} --eval {good} --out {out}", ["{missing}"]),
    ("evaluate-run-is-a-file", "evaluate --run {afile} --eval {good} --out {out}", ["{afile}"]),
    ("evaluate-bad-utf8", "evaluate --model tiny-random-llama --eval {bad_utf8} --strict --out {out}", ["{bad_utf8}", "line 2"]),
    ("evaluate-negative-beta", "evaluate --model tiny-random-llama --eval {good} --out {out} --set beta=-1", ["beta", "> 0"]),
    ("evaluate-top-p-out-of-range", "evaluate --model tiny-random-llama --eval {good} --out {out} --set top_p=1.5", ["top_p"]),
    ("evaluate-malformed-set", "evaluate --model tiny-random-llama --eval {good} --out {out} --set beta=[1", ["beta", "cannot parse"]),
    ("evaluate-prompts-bad-utf8", "evaluate --model tiny-random-llama --eval {good} --out {out} --prompts {bad_utf8_txt}",
     ["{bad_utf8_txt}", "line 2", "prompts_file"]),
    ("evaluate-config-is-a-directory", "evaluate --model tiny-random-llama --eval {good} --out {out} --config {adir}", ["{adir}"]),
    # compare
    ("compare-missing", "compare {missing} {adir}", ["{missing}"]),
    ("compare-file-not-directory", "compare {afile} {adir}", ["{afile}"]),
    # report
    ("report-missing", "report {missing}", ["{missing}"]),
    ("report-file-not-directory", "report {afile}", ["{afile}", "not a directory"]),
    ("report-empty-directory", "report {adir}", ["{adir}"]),
    # ablate
    ("ablate-missing-config", "ablate --config {missing} --out {out}", ["{missing}", "not found"]),
    ("ablate-config-is-a-directory", "ablate --config {adir} --out {out}", ["{adir}"]),
    ("ablate-config-bad-utf8", "ablate --config {bad_utf8_yaml} --out {out}", ["{bad_utf8_yaml}", "line 2"]),
    ("ablate-negative-beta", "ablate --config {ablation_bad_beta} --out {out}", ["arms.all.train.dpo.beta", "> 0"]),
    ("ablate-malformed-set", "ablate --config {ablation} --out {out} --set seeds=[1", ["seeds", "cannot parse"]),
    ("ablate-out-is-a-file", "ablate --config {ablation} --out {afile}", ["{afile}"]),
    # audit
    ("audit-missing-run", "audit --run {missing} --eval {good} --out {out}", ["{missing}"]),
    ("audit-bad-value", "audit --run {missing} --eval {good} --out {out} --set proj_dim=0", ["proj_dim", ">= 1"]),
    ("audit-malformed-override", "audit --run {missing} --eval {good} --out {out} --set proj_dim=[1", ["proj_dim", "cannot parse"]),
    ("audit-config-bad-utf8", "audit --run {missing} --eval {good} --out {out} --config {bad_utf8_yaml}", ["{bad_utf8_yaml}"]),
    ("audit-old-positional-override", "audit --validate --out {out} flip_rate=0.1", ["--set flip_rate=0.1"]),
    ("ablate-old-section-override", "ablate --config {ablation} --out {out} --set train={{\"dpo\":{{\"beta\":0.2}}}}",
     ["--set train.dpo.beta=0.2"]),
    ("audit-validate-bad-rate", "audit --validate --out {out} --set flip_rate=2", ["flip_rate", "[0, 1)"]),
    # power
    ("power-from-missing", "power --target-diff 0.05 --from {missing}", ["--from"]),
    ("power-config-is-a-directory", "power --target-diff 0.05 --config {adir}", ["{adir}"]),
    ("power-nan-discordance", "power --target-diff 0.05 --discordance nan", ["--discordance"]),
    ("power-negative-target", "power --target-diff -1", ["--target-diff"]),
    # export
    ("export-missing-run", "export {missing} --out {out}", ["{missing}"]),
    ("export-run-is-a-file", "export {afile} --out {out}", ["{afile}"]),
]


def _fill(text: str, w: dict[str, Path], out: Path) -> str:
    return text.format(out=out, **{k: v for k, v in w.items() if k != "out"})


def _argv(case_id: str, argv: str, w: dict[str, Path]) -> tuple[list[str], Path]:
    out = w["out"] / case_id
    return [_fill(a, w, out) for a in argv.split()], out


def test_every_command_is_fuzzed():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fuzzed = {argv.split()[0] for _, argv, _ in CASES}
    assert fuzzed == set(sub.choices), f"commands without fuzz cases: {set(sub.choices) - fuzzed}"


@pytest.mark.parametrize("case_id, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(case_id, argv, expected, w, capsys):
    args, out = _argv(case_id, argv, w)
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith(f"pairlab {args[0]}: error: "), captured.err
    for text in expected:
        assert _fill(text, w, out) in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not out.exists() or not any(out.iterdir()), "a refused command wrote output"


def test_nothing_but_the_message_reaches_the_real_stderr(w):
    """Subprocesses: the real interpreter's stderr holds exactly the one line."""
    for case_id in ("convert-bad-utf8", "simulate-malformed-set", "report-missing"):
        _, argv, expected = next(c for c in CASES if c[0] == case_id)
        args, out = _argv(case_id, argv, w)
        proc = subprocess.run([sys.executable, "-m", "pairlab", *args], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert all(_fill(t, w, out) in proc.stderr for t in expected)


def _boom(*args, **kwargs):
    raise RuntimeError("simulated bug in a stage")


def test_an_internal_error_shows_its_traceback_and_asks_for_a_report(w, monkeypatch, capsys):
    """A bug (here: a stage function made to raise) is exit 1 with the traceback, not a one-liner."""
    import pairlab.io.summary

    monkeypatch.setattr(pairlab.io.summary, "summarize_pairs", _boom)
    assert main(["inspect", "--input", str(w["good"])]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: simulated bug in a stage" in err
    assert "internal error" in err and "Please report it" in err


def test_an_oserror_off_the_users_paths_is_internal(w, monkeypatch, capsys):
    """A PermissionError on a path the user never named is a bug too, not a user error."""
    import pairlab.io.summary

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/nonexistent/pairlab-internal/state")

    monkeypatch.setattr(pairlab.io.summary, "summarize_pairs", denied)
    assert main(["inspect", "--input", str(w["good"])]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "Please report it" in err


def test_an_internal_error_reaches_the_real_stderr_with_its_traceback(w):
    code = ("import sys, pairlab.io.summary as s\n"
            "def boom(*a, **k):\n    raise RuntimeError('simulated bug')\n"
            "s.summarize_pairs = boom\n"
            "from pairlab.cli import main\n"
            f"sys.exit(main(['inspect', '--input', {str(w['good'])!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: simulated bug" in proc.stderr
    assert "Please report it" in proc.stderr
