"""Typed stage directories: per stage, its file names, its ``STAGE``, and how to verify it.

One rule everywhere: **a stage writes its outputs, then writes ``manifest.json`` last**,
carrying ``complete: true`` and the size and sha256 of every output file. So a directory
is complete (a manifest whose hashes match) or it is not, whatever instant a process was
killed at:

* before writing, a stage removes the old manifest first, then the files it owns (old
  outputs and report files, so nothing stale survives); a kill in between leaves a
  directory with no manifest, which every reader refuses;
* readers call :meth:`StageDir.verify`: stage, completeness, and every output's size and
  hash; an incomplete or changed directory is refused with an error saying how to redo
  (or, for a run, resume) it.

Overwrite rules (:meth:`StageDir.prepare`): ``--out`` must not be an input nor contain
one; it must not hold another stage's directory; a finished directory of the same stage
is replaced only with ``--overwrite`` (or reused where ``--resume`` applies); an
interrupted one (no manifest) is cleaned and redone. Only files the stage owns are ever
deleted: its outputs, its reports, its scratch (checkpoints) and what the old manifest
listed.

File kinds per stage:

``OUTPUTS``  data files or folders; hashed into the manifest;
``REPORTS``  HTML/JSON rendered from the outputs (``pairlab report`` rewrites them): not
             hashed, removed on every rewrite;
``SCRATCH``  resume state (train checkpoints, ablation arms): kept when an interrupted
             stage is rerun, removed by ``--overwrite``;
``CACHES``   content-keyed caches a rerun may reuse (audit gradients): never removed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar, Iterable

from . import artifacts
from .schema import PairDataError

MANIFEST = artifacts.MANIFEST
#: The start marker, ``.pairlab-started.STAGE``: created (empty) by :meth:`StageDir.start`
#: before any output and removed once the manifest is written. It names the stage that owns
#: an unfinished directory (two stages both write a ``pairs.parquet``, so the file names alone
#: cannot tell whose debris it is). The stage is in the file's *name*, so the marker says
#: whose it is from the instant it exists: creating a file is atomic, writing its content is not.
STARTED = ".pairlab-started"
#: What :func:`started_by` returns for a marker that names no stage (an earlier pairlab wrote the
#: stage into ``.pairlab-started``; a kill before that write left it empty).
UNKNOWN_STAGE = "?"
#: Report files any directory may hold after ``pairlab report DIR``.
GENERIC_REPORTS = ("report.html", "report.json")


class StageDirError(PairDataError):
    """A stage directory that is incomplete, changed, of another stage, or may not be written."""


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_temp(name: str) -> bool:
    """A temp file of :func:`pairlab.artifacts.atomic_path` (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def hash_outputs(root: str | os.PathLike, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{relative path: {bytes, sha256}}`` for each named file, and each file under each named folder.

    A subfolder that holds its own manifest is another stage's directory (ablation arms):
    it is verified on its own, not hashed here.
    """
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = root / name
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d / MANIFEST).exists())
                files += [Path(dirpath) / f for f in sorted(filenames) if not _is_temp(f)]
        else:
            continue
        for f in files:
            out[_rel(f, root)] = {"bytes": f.stat().st_size, "sha256": artifacts.file_sha256(f)}
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                    flag: str = "--out") -> None:
    """Refuse an output path that is one of the inputs, contains one, or lies inside an input
    folder (a folder input reads every data file in it: an output written there would replace a
    shard, or be read back as one by the next run). Hub ids are skipped."""
    target = Path(out).resolve()
    for spec in inputs:
        if spec is None or not os.path.exists(spec):
            continue  # a hub dataset id, or an in-memory table
        source = Path(spec).resolve()
        if _contains(target, source):
            what = "is" if target == source else "contains"
            raise StageDirError(f"{flag} {what} the input {spec}: writing there would overwrite it",
                                file=str(out), field=flag, hint=f"choose another {flag}")
        inside = _contains(source, target) or _contains(source, Path(os.path.abspath(out)))  # a link in it, too
        if source.is_dir() and inside and not (source / MANIFEST).exists():
            # (a stage directory given as an input, e.g. evaluate's --run, has its own rule:
            # check_out_location refuses writing inside another stage's directory)
            raise StageDirError(f"{flag} is inside the input folder {spec}: it would overwrite a file "
                                "read from there, or be read back as one", file=str(out), field=flag,
                                hint=f"choose a {flag} outside {spec}")


def check_output_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                      overwrite: bool = False, flag: str = "--out") -> None:
    """A single-file output (``pairlab convert``): never an input, never a stage directory,
    and an existing file only with ``overwrite`` (the file is replaced atomically)."""
    check_not_input(out, inputs, flag=flag)
    path = Path(out)
    if path.is_dir() and (path / MANIFEST).exists():
        raise StageDirError("is a pairlab stage directory; not overwriting it", file=str(out), field=flag,
                            hint=f"choose another {flag}")
    if path.exists() and not overwrite:
        raise StageDirError("already exists", file=str(out), field=flag,
                            hint=f"pass --overwrite to replace it, or choose another {flag}")


def enclosing_stage_dir(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(directory, stage) of the nearest pairlab stage directory strictly above ``path``: one whose
    manifest names a known stage, or one a stage started and did not finish. None when there is none."""
    for parent in Path(path).resolve().parents:
        # By name only: a parent may be enterable but not listable (a cluster's 0711 /scratch).
        try:
            if (parent / MANIFEST).exists():
                try:
                    stage = read_manifest(parent).get("stage")
                except StageDirError:
                    continue  # not a manifest pairlab wrote
                if stage in STAGE_DIRS:
                    return parent, stage
                continue
            for stage in STAGE_DIRS:
                if marker_path(parent, stage).exists():
                    return parent, stage
            if (parent / STARTED).exists():
                return parent, started_by(parent) or UNKNOWN_STAGE
        except OSError:
            continue
    return None


def check_out_location(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                       flag: str = "--out", report_of: str | os.PathLike | None = None) -> None:
    """Where a user may point an output flag: never at or around an input, and never inside another
    stage's directory (its outputs are hashed into its manifest; pairlab writes there only as that
    stage). ``report_of``: ``pairlab report DIR --out``, which may write DIR's own report files."""
    check_not_input(out, inputs, flag=flag)
    found = enclosing_stage_dir(out)
    if found is None:
        return
    parent, stage = found
    kind = STAGE_DIRS.get(stage)
    inside = Path(out).resolve().relative_to(parent).parts
    if kind is not None and len(inside) > 1 and inside[0] in kind.NESTED:
        return  # a container's own per-arm stage directories (the `ablate --plan` commands write there)
    if (report_of is not None and kind is not None and parent == Path(report_of).resolve()
            and Path(out).resolve().parent == parent and Path(out).name in (*kind.REPORTS, *GENERIC_REPORTS)):
        return
    what = (f"the {stage} directory {parent}" if kind is not None
            else f"the interrupted pairlab directory {parent}")
    allowed = ""
    if report_of is not None and kind is not None:
        allowed = f", or one of DIR's report files ({', '.join(dict.fromkeys((*kind.REPORTS, *GENERIC_REPORTS)))})"
    raise StageDirError(f"lies inside {what}: pairlab does not write into another stage's directory",
                        file=str(out), field=flag, hint=f"choose a {flag} outside it{allowed}")


class StageDir:
    """What one stage's directory holds and how to verify it (subclasses fill the names)."""

    STAGE: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""
    OUTPUTS: ClassVar[tuple[str, ...]] = ()
    #: Outputs a complete directory always has (the rest are optional, e.g. generations).
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    REPORTS: ClassVar[tuple[str, ...]] = ()
    SCRATCH: ClassVar[tuple[str, ...]] = ()
    CACHES: ClassVar[tuple[str, ...]] = ()
    #: Files whose presence without a manifest marks this stage's interrupted debris.
    MARKERS: ClassVar[tuple[str, ...]] = ()
    #: Subfolders that hold this stage's own nested stage directories (an ablation's arms), which
    #: the commands it prints (`ablate --plan`) write into.
    NESTED: ClassVar[tuple[str, ...]] = ()
    #: What to tell the user to do with an interrupted directory.
    REDO: ClassVar[str] = "rerun `{command} ... --out {dir}` to redo it"

    # ------------------------------------------------------------ reading

    @classmethod
    def owned(cls) -> tuple[str, ...]:
        return (*cls.OUTPUTS, *cls.REPORTS, *GENERIC_REPORTS, *cls.SCRATCH)

    @classmethod
    def has_debris(cls, path: str | os.PathLike) -> bool:
        """Whether ``path`` holds this stage's files (or their temp files) without being complete."""
        path = Path(path)
        owner = started_by(path)
        if owner is not None:
            return owner == cls.STAGE
        if any((path / m).exists() for m in cls.MARKERS):
            return True
        own = tuple(f".{n}." for n in (*cls.OUTPUTS, *cls.REPORTS) if "/" not in n)
        return path.is_dir() and any(p.name.startswith(own) and _is_temp(p.name) for p in path.iterdir())

    @classmethod
    def _redo(cls, path: Path) -> str:
        return cls.REDO.format(command=cls.COMMAND, dir=path)

    @classmethod
    def verify(cls, path: str | os.PathLike) -> dict[str, Any]:
        """The manifest of a complete ``STAGE`` directory; a :class:`StageDirError` otherwise."""
        path = Path(path)
        if not path.is_dir():
            raise StageDirError(f"not a {cls.STAGE} directory (does not exist)" if not path.exists()
                                else f"not a {cls.STAGE} directory (a file)", file=str(path),
                                hint=f"pass the --out of a finished `{cls.COMMAND}`")
        if not (path / MANIFEST).exists():
            _refuse_unknown_start(path)
            if cls.has_debris(path):
                raise StageDirError(f"incomplete {cls.STAGE} directory: no {MANIFEST}, so `{cls.COMMAND}` "
                                    "was interrupted (or is still running)", file=str(path),
                                    hint=cls._redo(path))
            raise StageDirError(f"not a {cls.STAGE} directory (no {MANIFEST})", file=str(path),
                                hint=f"pass the --out of a finished `{cls.COMMAND}`")
        manifest = read_manifest(path)
        stage = manifest.get("stage")
        if stage != cls.STAGE:
            raise StageDirError(f"a '{stage}' directory, not a {cls.STAGE} one", file=str(path / MANIFEST),
                                field="stage", hint=f"pass the --out of a finished `{cls.COMMAND}`")
        outputs = manifest.get("outputs")
        if manifest.get("complete") is not True or not isinstance(outputs, dict) or not all(
                isinstance(v, dict) and "sha256" in v for v in outputs.values()):
            raise StageDirError("the manifest does not list its outputs' hashes (written by an older "
                                "pairlab, or by hand)", file=str(path / MANIFEST), field="outputs",
                                hint=f"redo it: `{cls.COMMAND} ... --out {path} --overwrite`")
        missing = [r for r in cls.REQUIRED if not any(k == r or k.startswith(r + "/") for k in outputs)]
        if missing:
            raise StageDirError(f"the manifest lists no {missing[0]}", file=str(path / MANIFEST),
                                field="outputs", hint=f"redo it: `{cls.COMMAND} ... --out {path} --overwrite`")
        for name, want in outputs.items():
            f = path / name
            if not f.is_file():
                problem = "is missing"
            elif f.stat().st_size != want.get("bytes"):
                problem = f"has {f.stat().st_size} bytes, the manifest says {want.get('bytes')}"
            elif artifacts.file_sha256(f) != want["sha256"]:
                problem = "differs from the sha256 in the manifest"
            else:
                continue
            raise StageDirError(f"{name} {problem}: the directory changed after `{cls.COMMAND}` finished",
                                file=str(path), field=name,
                                hint=f"redo it: `{cls.COMMAND} ... --out {path} --overwrite`")
        return manifest

    @classmethod
    def is_complete(cls, path: str | os.PathLike) -> bool:
        try:
            cls.verify(path)
        except StageDirError:
            return False
        return True

    # ------------------------------------------------------------ writing

    @classmethod
    def prepare(cls, out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                overwrite: bool = False, resume: bool = False) -> str:
        """Check that ``out`` may be written (no side effects). Returns its state.

        ``"new"`` (absent or empty of this stage's files), ``"incomplete"`` (this stage's
        debris, no manifest: the writer cleans and redoes it), ``"overwrite"`` (a finished
        or changed directory that ``overwrite`` allows replacing) or ``"complete"`` (finished
        and verified, only with ``resume``: the caller has nothing to redo). A manifest that
        does not verify is never discarded without ``overwrite``.
        """
        out = Path(out)
        check_not_input(out, inputs)
        if out.exists() and not out.is_dir():
            raise StageDirError("exists and is not a directory", file=str(out), field="--out",
                                hint="choose a directory path for --out")
        if not out.is_dir():
            blocker = next((p for p in out.parents if p.exists()), None)
            if blocker is not None and not blocker.is_dir():  # found now, before any model loads
                raise StageDirError(f"{blocker} is a file, not a directory", file=str(out), field="--out",
                                    hint="choose a --out whose parent folders are folders")
            return "new"
        if not (out / MANIFEST).exists():
            owner = started_by(out)
            if owner is not None and owner != cls.STAGE:
                what = (f"an interrupted `{STAGE_DIRS[owner].COMMAND}` directory" if owner in STAGE_DIRS
                        else "an interrupted pairlab directory whose stage is unknown (killed as it started)")
                raise StageDirError(f"holds {what}", file=str(out), field="--out",
                                    hint="choose another --out; pairlab does not delete another stage's files")
            for other in STAGE_DIRS.values():
                own = set(cls.owned()) | set(cls.CACHES)
                foreign = [m for m in other.MARKERS if m not in own and (out / m).exists()]
                if other is not cls and foreign:
                    raise StageDirError(f"holds files of an interrupted `{other.COMMAND}` ({foreign[0]})",
                                        file=str(out), field="--out",
                                        hint="choose another --out; pairlab does not delete another stage's files")
            if cls.has_debris(out):
                return "incomplete"
            present = [n for n in cls.owned() if (out / n).exists()]
            if present:  # same names, but nothing says this stage wrote them: not ours to delete
                raise StageDirError(f"holds {present[0]} and no {MANIFEST}: not written by `{cls.COMMAND}`, "
                                    "so not overwriting it", file=str(out), field="--out",
                                    hint="choose another --out (or delete it if it is your own debris)")
            return "new"
        try:
            stage = read_manifest(out).get("stage")
        except StageDirError:
            raise StageDirError("holds an unreadable manifest.json; not overwriting it", file=str(out),
                                field="--out", hint="choose another --out") from None
        if stage is None:
            raise StageDirError("holds a manifest.json with no stage (not written by pairlab); not overwriting it",
                                file=str(out), field="--out", hint="choose another --out")
        if stage != cls.STAGE:
            raise StageDirError(f"holds a '{stage}' directory; `{cls.COMMAND}` does not overwrite another "
                                "stage's output", file=str(out), field="--out", hint="choose another --out")
        if overwrite:
            return "overwrite"
        try:
            cls.verify(out)
        except StageDirError as err:  # changed by hand, or an older pairlab's: not ours to discard
            raise StageDirError(f"holds a {cls.STAGE} directory that does not verify ({err.message})",
                                file=str(out), field="--out",
                                hint="pass --overwrite to replace it, or choose another --out") from None
        if resume:
            return "complete"
        raise StageDirError(f"already holds a finished {cls.STAGE} directory", file=str(out), field="--out",
                            hint=f"pass --overwrite to replace it, or choose another --out")

    @classmethod
    def start(cls, out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
              overwrite: bool = False, resume: bool = False) -> str:
        """:meth:`prepare`, then make ``out`` ready to write: manifest first, then the stage's own
        old files (its scratch too with ``overwrite``) are removed. Returns the state."""
        out = Path(out)
        state = cls.prepare(out, inputs=inputs, overwrite=overwrite, resume=resume)
        if state == "complete":
            return state
        if state != "new":
            cls.clean(out, scratch=overwrite)
        cls.mark_started(out)
        return state

    @classmethod
    def mark_started(cls, out: str | os.PathLike) -> None:
        """Create ``out`` and record that this stage is writing it (before any output)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        marker_path(out, cls.STAGE).touch()

    @classmethod
    def abandon(cls, out: str | os.PathLike) -> None:
        """Undo :meth:`mark_started` for a start refused before anything was written (a setting
        only the loaded model can check): the marker goes, and ``out`` too when that empties it,
        so the directory does not read as an interrupted run."""
        out = Path(out)
        marker_path(out, cls.STAGE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty

    @classmethod
    def clean(cls, out: str | os.PathLike, *, scratch: bool = False) -> None:
        """Remove the manifest, then this stage's outputs and reports (and scratch if asked)."""
        out = Path(out)
        listed: list[str] = []
        if (out / MANIFEST).exists():
            try:
                listed = list((read_manifest(out).get("outputs") or {}))
            except StageDirError:
                listed = []
            (out / MANIFEST).unlink()  # first: from here on the directory reads as incomplete
        names = [*cls.OUTPUTS, *cls.REPORTS, *GENERIC_REPORTS, *(cls.SCRATCH if scratch else ()), *listed]
        for name in dict.fromkeys(names):
            if name and not Path(name).is_absolute() and ".." not in Path(name).parts:
                _remove(out / name)
        for f in out.glob(".*.tmp") if out.is_dir() else ():
            _remove(f)

    @classmethod
    def finish(cls, out: str | os.PathLike, *, outputs: Iterable[str] | None = None,
               **manifest: Any) -> Path:
        """Write ``out/manifest.json`` last: ``complete: true`` and the hash of every output.

        ``manifest`` takes :func:`pairlab.artifacts.write_manifest`'s fields (stage is set here).
        """
        out = Path(out)
        hashed = hash_outputs(out, cls.OUTPUTS if outputs is None else outputs)
        written = artifacts.write_manifest(out, stage=cls.STAGE, outputs=hashed, complete=True, **manifest)
        for marker in start_markers(out):  # the manifest now says whose directory it is
            marker.unlink(missing_ok=True)
        return written


def marker_path(path: str | os.PathLike, stage: str) -> Path:
    """The start marker ``stage`` creates in ``path``."""
    return Path(path) / f"{STARTED}.{stage}"


def start_markers(path: str | os.PathLike) -> list[Path]:
    """Every start marker in ``path`` (this version's and an older pairlab's), sorted."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.name == STARTED or p.name.startswith(STARTED + "."))


def started_by(path: str | os.PathLike) -> str | None:
    """The stage that started ``path`` and did not finish it (its start marker), else None.

    :data:`UNKNOWN_STAGE` for a marker that names none (an older pairlab killed between
    creating its marker and writing the stage into it). Every reader refuses such a directory
    as interrupted; no stage cleans it, since nothing says whose files it holds.
    """
    path = Path(path)
    if (path / MANIFEST).exists():
        return None
    for marker in start_markers(path):
        if marker.name != STARTED:
            return marker.name[len(STARTED) + 1:] or UNKNOWN_STAGE
        try:
            return marker.read_text().strip() or UNKNOWN_STAGE
        except OSError:
            return UNKNOWN_STAGE
    return None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """``path/manifest.json`` as a dict (a :class:`StageDirError` when unreadable)."""
    file = Path(path) / MANIFEST
    try:
        manifest = artifacts.read_json(file)
    except (OSError, ValueError) as err:
        raise StageDirError(f"unreadable manifest: {err}", file=str(file)) from None
    if not isinstance(manifest, dict):
        raise StageDirError("manifest is not a JSON object", file=str(file))
    return manifest


# ---------------------------------------------------------------- the stages

class SimulateDir(StageDir):
    STAGE = "simulate"
    COMMAND = "pairlab simulate"
    TRAIN_RAW = "train.jsonl"
    EVAL_RAW = "eval.jsonl"
    TRAIN_PAIRS = "train_pairs.parquet"
    EVAL_PAIRS = "eval_pairs.parquet"
    OUTPUTS = (TRAIN_RAW, EVAL_RAW, TRAIN_PAIRS, EVAL_PAIRS)
    REQUIRED = (TRAIN_RAW,)
    #: not train.jsonl: a user's own data folder often holds one (its start marker tells a
    #: killed simulate apart)
    MARKERS = (TRAIN_PAIRS,)


class NoiseDir(StageDir):
    """``pairlab simulate --from``: label noise injected into existing pairs."""

    STAGE = "simulate-noise"
    COMMAND = "pairlab simulate --from"
    PAIRS = "pairs.parquet"
    OUTPUTS = (PAIRS,)
    REQUIRED = (PAIRS,)
    MARKERS = ()  # a lone pairs.parquet could be anyone's


class CurateDir(StageDir):
    STAGE = "curate"
    COMMAND = "pairlab curate"
    PAIRS = "pairs.parquet"
    EVAL = "eval.parquet"
    DROPPED = "dropped.parquet"
    SCORES = "scores.parquet"
    REPORT = "curation.html"
    OUTPUTS = (PAIRS, EVAL, DROPPED, SCORES)
    REQUIRED = (PAIRS, EVAL, DROPPED, SCORES)
    REPORTS = (REPORT,)
    MARKERS = (DROPPED, SCORES, REPORT)


class RunDir(StageDir):
    STAGE = "train"
    COMMAND = "pairlab train"
    ADAPTER = "adapter"
    CHECKPOINTS = "checkpoints"
    TRAIN_LOG = "train_log.jsonl"
    DYNAMICS = "dynamics.parquet"
    #: written by `pairlab report RUN_DIR`, after the run (not one of its outputs)
    REPORT = "report.html"
    OUTPUTS = (ADAPTER, TRAIN_LOG, DYNAMICS)
    REQUIRED = (TRAIN_LOG, DYNAMICS)
    SCRATCH = (CHECKPOINTS,)
    MARKERS = (CHECKPOINTS, ADAPTER, TRAIN_LOG)
    REDO = "resume it: `{command} ... --out {dir} --resume` (or start again with --overwrite)"


class EvalDir(StageDir):
    STAGE = "evaluate"
    COMMAND = "pairlab evaluate"
    PER_PAIR = "per_pair.parquet"
    METRICS = "metrics.json"
    GENERATIONS = "generations.parquet"
    EXCLUDED = "excluded.parquet"
    REPORT = "report.html"
    OUTPUTS = (PER_PAIR, METRICS, GENERATIONS, EXCLUDED)
    REQUIRED = (PER_PAIR, METRICS)
    MARKERS = (PER_PAIR, METRICS)


class CompareDir(StageDir):
    STAGE = "compare"
    COMMAND = "pairlab compare"
    COMPARISON = "comparison.json"
    OUTPUTS = (COMPARISON,)
    REQUIRED = (COMPARISON,)
    MARKERS = ()  # comparison.json alone is also an ablation's


class AuditDir(StageDir):
    STAGE = "audit"
    COMMAND = "pairlab audit"
    ATTRIBUTION = "attribution.parquet"
    CARTOGRAPHY = "cartography.parquet"
    CHECKPOINTS = "checkpoints.json"
    GRADIENTS = "gradients"
    REPORT = "audit.html"
    OUTPUTS = (ATTRIBUTION, CARTOGRAPHY, CHECKPOINTS)
    REQUIRED = (ATTRIBUTION,)
    REPORTS = (REPORT,)
    CACHES = (GRADIENTS,)
    MARKERS = (ATTRIBUTION, GRADIENTS)


class ValidationDir(StageDir):
    """``pairlab audit --validate``: holds curate/, run/, audit/ and cf-*/ stage directories."""

    STAGE = "audit-validate"
    COMMAND = "pairlab audit --validate"
    VALIDATION = "validation.json"
    EVAL_PAIRS = "eval_pairs.parquet"
    #: beside each training's run/ (OUT/, OUT/cf-*/): the pairs it trained on
    TRAIN_PAIRS = "pairs.parquet"
    OUTPUTS = (VALIDATION, EVAL_PAIRS)
    REQUIRED = (VALIDATION,)
    #: not validation.json: datasets ship their validation split so (SHP's
    #: ``<domain>/validation.json``); the start marker tells a killed validation apart
    MARKERS = ()


class AblationDir(StageDir):
    STAGE = "ablate"
    COMMAND = "pairlab ablate"
    CONFIG = "ablation.yaml"
    POOL = "pool"
    POOL_PAIRS = "pool/pool.parquet"
    EVAL_PAIRS = "pool/eval.parquet"
    COMPARISON = "comparison.json"
    COMPARISON_TABLE = "comparison.parquet"  # one flat row per arm x seed (pairlab.ablate.table)
    REPORT = "report.html"
    ARMS = "arms"
    BASE = "base"
    OUTPUTS = (CONFIG, POOL, COMPARISON, COMPARISON_TABLE)
    REQUIRED = (CONFIG, COMPARISON)
    #: Every arm is its own stage directories (verified by themselves); the plan files follow the config.
    SCRATCH = (ARMS, BASE, "eval.yaml", "eval-base.yaml")
    NESTED = (ARMS, BASE)
    MARKERS = (CONFIG, ARMS)
    REDO = "rerun `{command} ... --out {dir}`: it resumes what is missing"


#: Manifest ``stage`` -> its directory type.
STAGE_DIRS: dict[str, type[StageDir]] = {
    d.STAGE: d for d in (SimulateDir, NoiseDir, CurateDir, RunDir, EvalDir, CompareDir, AuditDir,
                         ValidationDir, AblationDir)}


def verify(path: str | os.PathLike) -> tuple[type[StageDir], dict[str, Any]]:
    """(directory type, manifest) of any complete stage directory, by its manifest's stage."""
    path = Path(path)
    if (path / MANIFEST).exists():
        stage = read_manifest(path).get("stage")
        kind = STAGE_DIRS.get(stage)
        if kind is None:
            raise StageDirError(f"unknown stage '{stage}'", file=str(path / MANIFEST), field="stage")
        return kind, kind.verify(path)
    _refuse_unknown_start(path)
    for kind in STAGE_DIRS.values():
        if kind.has_debris(path):
            kind.verify(path)  # raises: incomplete
    raise StageDirError(f"not a pairlab stage directory (no {MANIFEST})", file=str(path))


#: A stage directory given where pairs are read (``--input``, ``--eval``): the file it holds for
#: each role ("train": pairs to curate, train on or add noise to; "eval": held-out pairs).
PAIR_FILES: dict[str, dict[str, str]] = {
    SimulateDir.STAGE: {"train": SimulateDir.TRAIN_PAIRS, "eval": SimulateDir.EVAL_PAIRS},
    NoiseDir.STAGE: {"train": NoiseDir.PAIRS, "eval": NoiseDir.PAIRS},
    CurateDir.STAGE: {"train": CurateDir.PAIRS, "eval": CurateDir.EVAL},
    AblationDir.STAGE: {"train": AblationDir.POOL_PAIRS, "eval": AblationDir.EVAL_PAIRS},
    ValidationDir.STAGE: {"eval": ValidationDir.EVAL_PAIRS},
}


def pairs_file_of(path: str | os.PathLike, kind: type[StageDir], role: str, *, flag: str = "--input") -> Path:
    """The pairs file a complete stage directory holds for ``role``; a StageDirError when it holds none."""
    name = PAIR_FILES.get(kind.STAGE, {}).get(role)
    if name is None or not (Path(path) / name).is_file():
        holds = sorted(set(PAIR_FILES.get(kind.STAGE, {}).values()))
        raise StageDirError(f"a {kind.STAGE} directory holds no {'held-out ' if role == 'eval' else ''}pairs to read",
                            file=str(path), field=flag,
                            hint=f"pass one of its files: {', '.join(holds)}" if holds else
                            "pass a pairs file, or a simulate / curate directory")
    if role == "eval" and _parquet_rows(Path(path) / name) == 0:  # curate with eval_fraction 0, a tiny pool
        raise StageDirError(f"a {kind.STAGE} directory whose {name} holds no held-out pairs (0 rows)",
                            file=str(path), field=flag,
                            hint="rerun curate with --eval-fraction above 0 (or a larger input), "
                                 "or pass held-out pairs from another file" if kind.STAGE == "curate" else
                            f"rerun {kind.STAGE} so that it holds some out, or pass held-out pairs from another file")
    return Path(path) / name


def _parquet_rows(path: Path) -> int | None:
    """A Parquet file's row count from its footer; None when it is not readable as Parquet."""
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - its reader reports what is wrong with it
        return None


def _refuse_unknown_start(path: Path) -> None:
    """Refuse a directory whose start marker names no stage: interrupted, not a data folder."""
    owner = started_by(path)
    if owner is not None and owner not in STAGE_DIRS:
        raise StageDirError("holds an interrupted pairlab directory (killed as it started; its stage "
                            "is unknown): incomplete", file=str(path),
                            hint="rerun the command that writes it, into an empty --out")


def is_unfinished(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a stage directory that was started and not finished (by any stage)."""
    return started_by(path) is not None or any(k.has_debris(path) for k in STAGE_DIRS.values())


def check_input_file(path: str | os.PathLike) -> type[StageDir] | None:
    """An input path inside (or being) a stage directory: refuse it unless that directory is
    complete and the file is one of its verified outputs (``cur/pairs.parquet`` of a killed
    curate is debris). Returns the directory type of a stage directory given as a whole;
    other paths (plain files and folders, hub ids) are left to their readers."""
    path = Path(path)
    if path.is_dir():
        if (path / MANIFEST).exists() or is_unfinished(path):
            return verify(path)[0]
        return None
    if not path.is_file():
        return None
    parent = path.parent
    if (parent / MANIFEST).exists():
        try:
            stage = read_manifest(parent).get("stage")
        except StageDirError:
            return  # not a manifest pairlab wrote
        kind = STAGE_DIRS.get(stage)
        if kind is not None and path.name in kind.OUTPUTS:
            kind.verify(parent)
        return None
    if path.name in {n for kind in STAGE_DIRS.values() for n in kind.OUTPUTS}:
        _refuse_unknown_start(parent)
    for kind in STAGE_DIRS.values():
        if path.name in kind.OUTPUTS and kind.has_debris(parent):
            kind.verify(parent)  # raises: incomplete
    return None


__all__ = ["AblationDir", "AuditDir", "CompareDir", "CurateDir", "EvalDir", "GENERIC_REPORTS", "MANIFEST",
           "NoiseDir", "PAIR_FILES", "RunDir", "STAGE_DIRS", "STARTED", "UNKNOWN_STAGE", "SimulateDir", "StageDir", "StageDirError", "ValidationDir",
           "check_input_file", "check_not_input", "check_out_location", "check_output_file", "enclosing_stage_dir", "hash_outputs", "is_unfinished",
           "marker_path", "pairs_file_of", "read_manifest", "start_markers", "started_by", "verify"]
