"""The `pairlab` command line: parse arguments, call the stage APIs, map errors to exit codes.

Each stage contributes its subcommands through a ``COMMANDS`` list in its own
``cli`` module (``pairlab/<stage>/cli.py``), so this file stays a dispatcher.
Heavy imports (torch, transformers) happen inside the command functions, which
keeps ``pairlab --help`` instant.

Exit codes: 0 ok, 2 bad input or config (message names file/line/field, no
traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .schema import PairDataError

#: Modules that contribute subcommands, in the order `pairlab --help` lists them.
COMMAND_MODULES = (
    "pairlab.io.cli",
    "pairlab.simulate.cli",
    "pairlab.curate.cli",
    "pairlab.train.cli",
    "pairlab.evaluate.cli",
    "pairlab.reports.cli",
    "pairlab.ablate.cli",
    "pairlab.audit.cli",
)


@dataclass
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


# ---------------------------------------------------------------- shared input options

def add_input_args(parser: argparse.ArgumentParser, *, flag: str = "--input",
                   required: bool = True, dest: str = "input") -> None:
    """The options every command that reads pairs takes: SPEC, --format, --map, --split."""
    parser.add_argument(flag, dest=dest, required=required, metavar="SPEC",
                        help="pairs to read: a .jsonl/.json/.parquet file, a directory of them, "
                             "or a hub dataset id (online; add --split)")
    # Companion options follow the flag's name: --input -> --format, --map ...;
    # --from -> --from-format, --from-map ...; --eval-from -> --eval-from-map ...
    prefix = "" if flag == "--input" else f"{flag.lstrip('-')}-"
    parser.add_argument(f"--{prefix}format", dest=f"{dest}_format", default="auto",
                        help="layout: auto (detect), h4, raw, argilla, hh, generic, pairs")
    parser.add_argument(f"--{prefix}map", dest=f"{dest}_map", action="append", default=[],
                        metavar="FIELD=PATH",
                        help="map a schema field to a (dotted) input field, e.g. "
                             "score_chosen=metadata.score_chosen; repeatable")
    parser.add_argument(f"--{prefix}split", dest=f"{dest}_split", default=None,
                        help="split of a hub dataset (e.g. train_prefs)")
    parser.add_argument(f"--{prefix}binarize", dest=f"{dest}_binarize", default="mean-aspects",
                        help="raw UltraFeedback only: mean-aspects | overall-score | fine-grained")
    parser.add_argument(f"--{prefix}pairing", dest=f"{dest}_pairing", default="best-vs-random",
                        help="raw UltraFeedback only: best-vs-random | best-vs-worst | all-pairs")
    parser.add_argument(f"--{prefix}seed", dest=f"{dest}_seed", type=int, default=0,
                        help="raw UltraFeedback only: seed for best-vs-random")


def read_input(args: argparse.Namespace, dest: str = "input"):
    """Read the pairs named by :func:`add_input_args` options into a pairs table."""
    from .io import read_pairs

    return read_pairs(
        getattr(args, dest),
        format=getattr(args, f"{dest}_format"),
        mapping=getattr(args, f"{dest}_map"),
        split=getattr(args, f"{dest}_split"),
        binarize=getattr(args, f"{dest}_binarize"),
        pairing=getattr(args, f"{dest}_pairing"),
        seed=getattr(args, f"{dest}_seed"),
    )


# ---------------------------------------------------------------- dispatcher

def _commands() -> list[Command]:
    commands: list[Command] = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):  # stage not built yet
                continue
            raise
        commands.extend(getattr(module, "COMMANDS", []))
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairlab",
        description="Curate preference pairs, train QLoRA DPO on them, evaluate and audit.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"pairlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in _commands():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = args._run(args)
    except PairDataError as err:
        print(f"pairlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pairlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pairlab inspect ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
