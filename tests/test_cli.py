import subprocess
import sys

from pairlab.cli import build_parser, main

EXPECTED = {"convert", "inspect", "simulate", "curate", "train", "evaluate", "compare", "report", "ablate",
            "audit", "export"}


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "pairlab", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in EXPECTED:
        assert name in out.stdout


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert EXPECTED <= set(sub.choices)
    for name in sub.choices:
        try:
            main([name, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert "usage: pairlab " + name in capsys.readouterr().out


def test_bad_input_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{not json\n')
    # a bad row is rejected and the read goes on; --strict makes it the error (exit 2)
    out = subprocess.run([sys.executable, "-m", "pairlab", "inspect", "--input", str(bad), "--strict"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "line 2" in out.stderr and str(bad) in out.stderr
    out = subprocess.run([sys.executable, "-m", "pairlab", "inspect", "--input", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "1 of 2 rows rejected" in out.stderr and "line 2" in out.stderr
    # a file with no readable row is still an error
    bad.write_text("{not json\n")
    out = subprocess.run([sys.executable, "-m", "pairlab", "inspect", "--input", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no row could be read" in out.stderr and "Traceback" not in out.stderr


def test_test_modules_have_unique_basenames():
    """Test folders have no __init__.py, so pytest imports modules by basename: two
    `test_x.py` in different folders collide at collection."""
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
