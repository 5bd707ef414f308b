"""The `pairlab` command line: parse arguments, call the stage APIs, map errors to exit codes.

Each stage contributes its subcommands through a ``COMMANDS`` list in its own
``cli`` module (``pairlab/<stage>/cli.py``), so this file stays a dispatcher.
Heavy imports (torch, transformers) happen inside the command functions, which
keeps ``pairlab --help`` instant.

Exit codes: 0 ok; 2 a user error (any :class:`pairlab.errors.PairlabError`, a bad path,
encoding or config: one line naming file/line/field, no traceback); 1 an internal error
(a bug: the traceback and a request to report it); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .console import quiet_console
from .errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, PairlabError, os_error_message

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
    "pairlab.export.cli",
)


@dataclass
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


# ---------------------------------------------------------------- shared input options

#: Companion options of an input, as (name, add_argument keywords). ``--seed`` is the
#: raw reader's pairing seed; it keeps its prefixed name only (``--eval-seed``,
#: ``--from-seed``) because ``simulate`` and ``audit`` have a ``--seed`` of their own.
_INPUT_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("format", {"default": "auto", "metavar": "LAYOUT",
                "help": "layout: auto (detect) or a registered layout ({layouts})"}),
    ("map", {"action": "append", "default": [], "metavar": "FIELD=PATH",
             "help": "feed a schema field from a (dotted) input field or column, e.g. "
                     "score_chosen=metadata.score_chosen or prompt=question; repeatable"}),
    ("split", {"default": None, "metavar": "SPLIT", "help": "split of a hub dataset, a saved DatasetDict, or a "
                                        "folder of hub-named files (train_prefs-00000-of-00001.parquet): "
                                        "e.g. train_prefs"}),
    ("hub-config", {"default": None, "metavar": "NAME",
                    "help": "config (subset) name of a hub dataset (online)"}),
    ("hub-revision", {"default": None, "metavar": "REV",
                      "help": "branch, tag or commit of a hub dataset (online)"}),
    ("binarize", {"default": "mean-aspects", "metavar": "STRATEGY",
                  "help": "raw UltraFeedback only: mean-aspects | overall-score | fine-grained"}),
    ("pairing", {"default": "best-vs-random", "metavar": "PAIRING",
                 "help": "raw UltraFeedback only: best-vs-random | best-vs-worst | all-pairs"}),
    ("seed", {"type": int, "default": 0, "metavar": "N", "help": "raw UltraFeedback only: seed for best-vs-random"}),
]
_NO_ALIAS = ("seed",)


def add_input_args(parser: argparse.ArgumentParser, *, flag: str = "--input",
                   required: bool = True, dest: str = "input", primary: bool = True) -> None:
    """The options every command that reads pairs takes: SPEC, --format, --map, --split, ...

    Companion options follow the flag's name: ``--input`` -> ``--format``, ``--map``...;
    ``--eval`` -> ``--eval-format``, ``--eval-map``...; ``--from`` -> ``--from-map``...
    The ``primary`` input of a command (its only one, or ``--input`` beside
    ``--eval-from``) also answers to the plain names, so ``--map`` works on every command
    with one input and the prefixed forms stay as aliases. ``--strict`` is one flag per
    command and covers all its inputs.
    """
    parser.add_argument(flag, dest=dest, required=required, metavar="SPEC",
                        help="pairs to read: a .jsonl/.json/.parquet/.csv/.tsv file (also "
                             ".gz/.bz2/.xz/.zst compressed), a directory of them, a "
                             "datasets save_to_disk directory, or a hub dataset id (online; "
                             "add --split)")
    prefix = "" if flag == "--input" else f"{flag.lstrip('-')}-"
    taken = parser._option_string_actions  # shared by argument groups and their parser
    for name, kwargs in _INPUT_OPTIONS:
        names = [f"--{prefix}{name}"]
        if prefix and primary and name not in _NO_ALIAS and f"--{name}" not in taken:
            names.append(f"--{name}")
        if name == "format":  # the layouts registered now (pairlab.io.register_layout)
            from .io.layouts import layout_names

            kwargs = {**kwargs, "help": kwargs["help"].format(layouts=", ".join(layout_names()))}
        parser.add_argument(*names, dest=f"{dest}_{name.replace('-', '_')}", **kwargs)
    if "--strict" not in taken:
        parser.add_argument("--strict", action="store_true",
                            help="stop at the first row that cannot become a pair (exit 2, "
                                 "naming file, line and field) instead of rejecting it and "
                                 "reading on")


def bounded(kind: type = float, *, min: float | None = None, gt: float | None = None,
            max: float | None = None, lt: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``kind`` and checks its range with the configs' own rule
    (:func:`pairlab.config.check_range`); argparse then exits 2 naming the flag."""
    from .config import check_range

    rule = {k: v for k, v in (("min", min), ("gt", gt), ("max", max), ("lt", lt)) if v is not None}

    def parse(text: str):
        try:
            value = kind(text)
            check_range(value, rule, "")
        except ValueError as err:  # a ConfigError is a ValueError too
            message = getattr(err, "message", None) or (f"expected {'a whole number' if kind is int else 'a number'}, "
                                                         f"got {text!r}")
            raise argparse.ArgumentTypeError(message) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def add_config_args(parser: argparse.ArgumentParser, *, example: str, required: bool = False,
                    config_help: str = "config fields in a YAML file") -> None:
    """The one override grammar of every command that takes a config: ``--config FILE`` plus
    repeatable ``--set dotted.key=VALUE`` (``args.config``, ``args.overrides``; parsed by
    :func:`pairlab.config.cli_overrides`)."""
    parser.add_argument("--config", required=required, default=None, metavar="YAML", help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config field, dotted for nested ones, e.g. {example}; the value is "
                             "YAML; repeatable")


def refuse_positional_overrides(values: list[str], command: str) -> None:
    """The old ``pairlab audit ... KEY=VALUE`` spelling: exit 2 with the ``--set`` form."""
    if values:
        from .config import ConfigError

        fixed = " ".join(f"--set {v}" for v in values)
        raise ConfigError(f"positional overrides are no longer read: {' '.join(values)}",
                          hint=f"write them as `pairlab {command} ... {fixed}`")


def read_input(args: argparse.Namespace, dest: str = "input", *, with_rejects: bool = False,
               announce: bool = True):
    """Read the pairs named by :func:`add_input_args` options into a pairs table.

    Rejected rows are counted in ``read_stats`` and announced on stderr in one line;
    ``with_rejects`` returns ``(pairs, rejects)`` for a command that records them (curate).

    A file inside a stage directory (``cur/pairs.parquet``) is read only when that
    directory is complete and the file matches its manifest.
    """
    from .dirs import check_input_file
    from .io import read_pairs_with_rejects

    check_input_file(getattr(args, dest))
    pairs, rejects = read_pairs_with_rejects(
        getattr(args, dest),
        format=getattr(args, f"{dest}_format"),
        mapping=getattr(args, f"{dest}_map"),
        split=getattr(args, f"{dest}_split"),
        binarize=getattr(args, f"{dest}_binarize"),
        pairing=getattr(args, f"{dest}_pairing"),
        seed=getattr(args, f"{dest}_seed"),
        strict=getattr(args, "strict", False),
        hub_config=getattr(args, f"{dest}_hub_config", None),
        hub_revision=getattr(args, f"{dest}_hub_revision", None),
    )
    if announce:  # (convert states its own error instead)
        announce_rejects(getattr(args, "command", ""), pairs.attrs.get("read_stats", {}))
    return (pairs, rejects) if with_rejects else pairs


def announce_rejects(command: str, stats: dict) -> None:
    """The one stderr line saying how many rows a read rejected (``stats``: its read_stats)."""
    from .io.rejects import describe_reject

    if stats.get("rejected"):
        print(f"pairlab {command}: note: {stats['rejected']} of {stats['rows']} rows rejected (first: "
              f"{describe_reject(stats['rejects'][0])}); --strict makes this an error", file=sys.stderr)


# ---------------------------------------------------------------- dispatcher

def _commands() -> list[Command]:
    # Every stage is part of pairlab: one that fails to import is a bug, never a missing command.
    commands: list[Command] = []
    for name in COMMAND_MODULES:
        commands.extend(importlib.import_module(name).COMMANDS)
    return commands


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one line (like every other pairlab error), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


#: Where an internal error (a bug, not a user error) should be reported.
ISSUES_URL = "the pairlab issue tracker"

#: OSErrors that a user's path causes (a missing input, --out under a file, a read-only dir).
USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                  NotADirectoryError)


def _error(args: argparse.Namespace, message: str) -> int:
    # One line whatever the message holds (a YAML error spans several).
    print(f"pairlab {args.command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def _user_paths(args: argparse.Namespace) -> list[Path]:
    """Every path the user named on the command line (plus $PAIRLAB_CACHE), as given."""
    import os

    values: list[str] = []
    for value in vars(args).values():
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, list):
            values += [v for v in value if isinstance(v, str)]
    if os.environ.get("PAIRLAB_CACHE"):
        values.append(os.environ["PAIRLAB_CACHE"])
    return [Path(v).expanduser() for v in values if v and "=" not in v]


def _on_user_path(err: OSError, args: argparse.Namespace) -> bool:
    """True when the failing path is a path the user gave, inside one, or a parent of one."""
    names = [n for n in (err.filename, getattr(err, "filename2", None)) if isinstance(n, (str, Path))]
    if not names:
        return False
    given = [p.absolute() for p in _user_paths(args)]
    for name in names:
        path = Path(name).expanduser().absolute()
        if any(path == p or p in path.parents or path in p.parents for p in given):
            return True
    return False


def _undecodable_file(args: argparse.Namespace) -> str | None:
    """``FILE, line N`` of the first text file the user gave that is not valid UTF-8 (None: none is)."""
    from .io.sources import compression_of

    for path in _user_paths(args):
        if not path.is_file() or path.suffix == ".parquet" or compression_of(path) is not None:
            continue
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[:err.start].count(b"\n") + 1
            return f"{path}, line {line}"
    return None


def _internal_error(args: argparse.Namespace) -> int:
    import traceback

    traceback.print_exc()
    print(f"pairlab {args.command}: internal error: this is a bug in pairlab, not in your input. "
          f"Please report it ({ISSUES_URL}) with the command line and the traceback above.",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR


#: Argument dests that name an input (a file or a directory a command reads): an output flag may
#: not be one of them nor contain one.
INPUT_DESTS = ("input", "from_spec", "eval_from", "contamination_file", "pairs", "model", "tokenizer",
               "config", "run", "eval", "prompts_file", "eval_dirs", "dir", "baseline", "from_dir",
               "timings", "source", "eval_dir")
#: Argument dests that name a file or directory a command writes.
OUTPUT_DESTS = (("out", "--out"), ("rejects", "--rejects"))
#: Commands whose --out is a file (the others write a directory).
FILE_OUTPUT_COMMANDS = ("convert", "report")


def same_path(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


#: Argument dests that read pairs, and the role a stage directory given there plays.
PAIR_INPUT_ROLES = {"input": "train", "from_spec": "train", "pairs": "train", "eval": "eval", "eval_from": "eval"}


def resolve_stage_inputs(args: argparse.Namespace) -> None:
    """A stage directory given where pairs are read (``--eval cur``) is verified and replaced by the
    pairs file it holds for that role (``cur/eval.parquet``), said on stderr; one holding no pairs
    (an evaluation) is refused. ``train --pairs`` resolves its own (its record names the directory)."""
    from .dirs import check_input_file, pairs_file_of

    for dest, role in PAIR_INPUT_ROLES.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str) or not value or (args.command == "train" and dest == "pairs"):
            continue
        flag = "--from" if dest == "from_spec" else "--" + dest.replace("_", "-")
        if not Path(value).is_dir():
            continue
        kind = check_input_file(value)
        if kind is None:
            continue  # a plain folder of data files (a hub snapshot): read as such
        resolved = pairs_file_of(value, kind, role, flag=flag)
        setattr(args, dest, str(resolved))
        if getattr(args, f"{dest}_format", None) == "auto":  # pairlab wrote it: its own layout
            setattr(args, f"{dest}_format", "pairs")
        print(f"pairlab {args.command}: {flag} {value}: reading {resolved} (the {kind.STAGE} directory's "
              f"{'held-out' if role == 'eval' else 'training'} pairs)", file=sys.stderr)


def check_outputs(args: argparse.Namespace) -> None:
    """Every output flag: not an input, not around one, not inside another stage's directory."""
    from .dirs import check_out_location

    inputs: list[str] = []
    for dest in INPUT_DESTS:
        value = getattr(args, dest, None)
        inputs += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]
    config = getattr(args, "config", None)
    for dest, flag in OUTPUT_DESTS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and value and value != "-":
            if isinstance(config, str) and config and os.path.exists(config) and same_path(value, config):
                raise PairlabError(f"{flag} is the config file {config}: writing there would overwrite it",
                                   field=flag, hint=f"choose another {flag}")
            trl_dir = args.command == "convert" and dest == "out" and getattr(args, "trl", False)
            if (args.command in FILE_OUTPUT_COMMANDS or dest == "rejects") and Path(value).is_dir() \
                    and not trl_dir:  # convert --trl writes a save_to_disk directory (it checks it)
                from .dirs import MANIFEST

                if (Path(value) / MANIFEST).exists():
                    raise PairlabError("is a pairlab stage directory; not overwriting it", file=value, field=flag,
                                       hint=f"choose another {flag}: a file path")
                raise PairlabError("is a directory; it names the file to write", file=value, field=flag,
                                   hint=f"give a file path inside it, e.g. {Path(value) / 'out.html'}"
                                   if args.command == "report" else "give a file path inside it")
            # a config may lie inside the output (`ablate`'s Slurm folder holds its resolved config)
            check_out_location(value, [i for i in inputs if i is not config], flag=flag,
                               report_of=getattr(args, "dir", None) if args.command == "report" else None)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 ok; 2 user error (:class:`~pairlab.errors.PairlabError`,
    a bad path, bad encoding or bad config; one line, no traceback); 1 internal error
    (traceback + a request to report it); 130 interrupted."""
    quiet_console()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a usage error (one line) returns 2; --help and --version exit as usual
        if not done.code:
            raise
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        prepare = getattr(args, "_prepare", None)  # a command's own argument normalization, first
        if prepare is not None:
            prepare(args)
        check_outputs(args)
        resolve_stage_inputs(args)
        code = args._run(args)
    except PairlabError as err:
        return _error(args, str(err))
    except KeyboardInterrupt:
        print(f"pairlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pairlab inspect ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    # Backstops: stages convert these where the path is known; what still escapes is
    # mapped only when it is about a path the user gave (else it is a bug, shown in full).
    except USER_OS_ERRORS as err:
        if not _on_user_path(err, args):
            return _internal_error(args)
        return _error(args, os_error_message(err))
    except UnicodeDecodeError as err:
        where = _undecodable_file(args)
        if where is None:  # not about a file the user gave
            return _internal_error(args)
        byte = err.object[err.start:err.start + 1]
        return _error(args, f"{where}: not valid UTF-8 ({err.reason}: byte {byte!r})")
    except Exception:
        return _internal_error(args)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
