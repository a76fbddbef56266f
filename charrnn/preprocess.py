"""Text file -> torch-rnn's .h5/.json, streaming in two passes so memory stays flat.

Pass 1 reads the file in chunks to find the vocabulary (in order of first occurrence) and the
character count; pass 2 encodes it chunk by chunk into the train/val/test datasets. Both outputs
are written to temporary files beside their targets and moved into place only when complete, so a
crash or a bad input never destroys an existing pair.

A large file (UTF-8 or ``--encoding bytes``) is cut into parts of at least ``MIN_PART_BYTES``, one
per core (``--workers``), each starting on a character boundary, which forked processes read side
by side. In pass 1 each part lists its own units; taken in part order, the units not seen in an
earlier part give the whole file's order of first occurrence. Pass 2 allocates the datasets in the
.h5 first, and each part writes its indices straight into them with ``os.pwrite``, after as many
as the parts before it hold. The output does not depend on the number of parts.

Runs of ASCII are never decoded (see :mod:`charrnn.units`): their bytes are searched and mapped with
``bytes.translate``. The file's SHA-256 is computed by one more task of the same pool meanwhile, and
what pass 2 has written is flushed to disk while it goes on.

    python -m charrnn.preprocess --input_txt data/tiny-shakespeare.txt \\
        --output_h5 data/tiny-shakespeare.h5 --output_json data/tiny-shakespeare.json
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import multiprocessing
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from multiprocessing.pool import AsyncResult, Pool, ThreadPool
from pathlib import Path
from typing import BinaryIO, TypeVar

import h5py
import numpy as np

from charrnn.atomic import fsync_dir, temp_name
from charrnn.errors import UsageError
from charrnn.files import check_readable, empty_file
from charrnn.units import CHUNK_BYTES, DecodeError, Piece, read_units
from charrnn.vocab import Vocab, byte_token

BLOCK = 1 << 16
SPLITS = ("train", "val", "test")
MIN_PART_BYTES = 8 << 20  # a file is cut into parts of at least this size, one per worker
MAX_PARTS = 8
FLUSH_SECONDS = 0.01  # while encoding, how often what is written so far is flushed to disk
SHOWN_UNKNOWN = 20  # characters outside a given vocabulary: the most common, named in the report and the .json
T = TypeVar("T")
_flush = getattr(os, "fdatasync", os.fsync)  # the file's data, without its times where the system can


class PreprocessError(UsageError):
    """A bad input or output named by its flag; the message says what to do."""


@dataclass(frozen=True)
class UnknownReport:
    """How characters outside a given vocabulary are reported, in the words of the command that asked.

    Args:
        source: names the text file (``--input_txt data/x.txt``).
        vocab: names the vocabulary (``--vocab v.json``).
        flag: the flag that chooses drop or error (``--unknown``).
        dropped: ends the report when they are left out.
        report: where the report of dropped characters goes (default: printed unless quiet).
    """

    source: str
    vocab: str
    flag: str = "--unknown"
    dropped: str = "(left out)"
    report: Callable[[str], None] | None = None

    def message(self, unknown: Counter[int], encoding: str, total: int | None = None) -> str:
        """``total``: how many there are, when ``unknown`` holds only the most common (as the .json records)."""
        spell = byte_token if encoding == "bytes" else (lambda u: repr(chr(u)))
        shown = ", ".join(f"{spell(u)}×{n}" for u, n in unknown.most_common(SHOWN_UNKNOWN))
        return f"{total or sum(unknown.values())} characters of {self.source} are not in {self.vocab}: {shown}"


@dataclass
class Scan:
    """What pass 1 learns about a file."""

    units: list[int] = field(default_factory=list)  # code points (or byte values), first-occurrence order
    total: int = 0
    unknown: Counter[int] = field(default_factory=Counter)


def scan_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks; recorded in the .json to notice a changed corpus."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def vocab_digest(vocab: Vocab) -> str:
    """SHA-256 of a vocabulary's tokens in index order: what decides how a text is encoded with it."""
    return hashlib.sha256("\n".join(vocab.tokens).encode("utf-8", "surrogatepass")).hexdigest()


def made_with(encoding: str, val_frac: float, test_frac: float, vocab: Vocab | None) -> dict[str, object]:
    """Every setting that changes what :func:`preprocess` writes, as the .json records it (under ``charrnn``,
    beside the text's SHA-256): files made with other settings must be made again. ``vocab`` is the given
    vocabulary (None: the text's own). ``unknown`` is not among them: it changes the output only through the
    characters left out, which the .json records (``unknown``), so that a cached pair can be checked again."""
    return {"encoding": encoding, "val_frac": val_frac, "test_frac": test_frac,
            "vocab_sha256": None if vocab is None else vocab_digest(vocab)}


def unit_space(encoding: str) -> int:
    """How many distinct units a file can hold: bytes, or Unicode code points."""
    return 256 if encoding == "bytes" else 0x110000


def _splittable(encoding: str) -> bool:
    """Whether a file in ``encoding`` can be cut into parts read on their own (bytes and UTF-8)."""
    return encoding == "bytes" or codecs.lookup(encoding).name == "utf-8"


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def may_fork() -> bool:
    """Whether worker processes can be forked safely: the system forks, and this process runs no other
    thread (a child gets only the calling thread, so a lock another one held would stay held)."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def part_count(size: int, encoding: str, workers: int | None) -> int:
    """How many parts to cut a file of ``size`` bytes into: one per worker, each of at least
    ``MIN_PART_BYTES``; a single part for codecs other than UTF-8 or where forking is not safe."""
    if not _splittable(encoding) or not may_fork():
        return 1
    return max(1, min(workers or available_cores(), size // MIN_PART_BYTES, MAX_PARTS))


def split_file(path: Path, encoding: str, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges (start, stop) of nearly equal size covering the file, each starting on a
    character boundary: in UTF-8 a cut moves forward past continuation bytes (at most 3)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            cut = i * size // parts
            cuts.append(max(cuts[-1], cut if encoding == "bytes" else _character_start(f, cut)))
    return list(zip(cuts, cuts[1:] + [size], strict=True))


def _character_start(f: BinaryIO, at: int) -> int:
    """The first UTF-8 character boundary at or after ``at``: past at most 3 continuation bytes."""
    f.seek(at)
    head = f.read(3)
    return at + next((k for k, b in enumerate(head) if b & 0xC0 != 0x80), len(head))


def _new_bytes(chunk: bytes, known: bytes) -> list[int]:
    """Byte values of ``chunk`` not in ``known``, in order of first occurrence."""
    fresh = set(chunk.translate(None, known))
    return sorted(fresh, key=lambda b: chunk.index(b)) if fresh else []


def _new_code_points(units: np.ndarray, seen: np.ndarray) -> list[int]:
    """Code points of ``units`` not marked in ``seen``, in order of first occurrence; marks them."""
    found: list[int] = []
    # Small blocks keep the search for new units cheap: after the first few, almost none are new.
    for start in range(0, len(units), BLOCK):
        fresh = units[start : start + BLOCK]
        fresh = fresh[~seen[fresh]]  # in order of position
        if fresh.size:
            values, first = np.unique(fresh, return_index=True)
            found.extend(int(v) for v in values[np.argsort(first)])
            seen[values] = True
    return found


def _pieces(path: Path, encoding: str, start: int = 0, stop: int | None = None) -> Iterator[Piece]:
    """The pieces of :func:`charrnn.units.read_units`, one by one; decoding errors name the flag."""
    try:
        for pieces in read_units(path, encoding, start=start, stop=stop):
            yield from pieces
    except DecodeError as e:
        raise PreprocessError(f"--input_txt {path} is not valid {encoding} at {e}; fix the file, "
                              "or pass --encoding bytes to model raw bytes") from None
    except UnicodeError as e:  # another codec's own complaint
        raise PreprocessError(f"--input_txt {path} is not valid {encoding} ({e}); pass the file's --encoding, "
                              "or --encoding bytes to model raw bytes") from None


def _byte_values(mask: np.ndarray) -> bytes:
    """The byte values (below 256) where ``mask`` is true."""
    return bytes(np.flatnonzero(mask[:256]).astype(np.uint8))


def scan(path: Path, encoding: str, vocab: Vocab | None, start: int = 0, stop: int | None = None) -> Scan:
    """Pass 1 over the bytes ``start:stop``: the units in order of first occurrence, or with a given
    vocabulary the units it lacks."""
    if vocab is not None:
        return _scan_unknown(path, encoding, vocab, start, stop)
    result = Scan()
    seen = np.zeros(unit_space(encoding), dtype=bool)
    known = b""  # the byte values among result.units, for bytes.translate
    for units in _pieces(path, encoding, start, stop):
        result.total += len(units)
        if isinstance(units, bytes):
            fresh = _new_bytes(units, known)
            seen[fresh] = True
        else:
            fresh = _new_code_points(units, seen)
        if fresh:
            result.units.extend(fresh)
            known += bytes(u for u in fresh if u < 256)
    return result


def _scan_unknown(path: Path, encoding: str, vocab: Vocab, start: int, stop: int | None) -> Scan:
    """Pass 1 against a given vocabulary: how many units it knows, and the counts of the others."""
    result = Scan()
    table = vocab.lookup_table(unit_space(encoding))
    known_bytes = _byte_values(table[:256] > 0)
    for units in _pieces(path, encoding, start, stop):
        if isinstance(units, bytes):
            unknown = units.translate(None, known_bytes)
            result.total += len(units) - len(unknown)
            result.unknown.update(unknown)
        else:
            known = table[units] > 0
            result.total += int(np.count_nonzero(known))
            result.unknown.update(units[~known].tolist())
    return result


def merge_scans(scans: list[Scan]) -> Scan:
    """The scan of consecutive parts as one: the units of each part not seen in an earlier one follow
    in their order, which is the order of first occurrence in the whole file."""
    merged = Scan()
    for part in scans:
        seen = set(merged.units)
        merged.units.extend(u for u in part.units if u not in seen)
        merged.total += part.total
        merged.unknown.update(part.unknown)
    return merged


def split_sizes(total: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """torch-rnn's split: val and test are truncated fractions, train is the rest."""
    val, test = int(val_frac * total), int(test_frac * total)
    return total - val - test, val, test


def check_encoding(encoding: str) -> None:
    """Refuses an ``--encoding`` that is neither ``bytes`` nor a text encoding (base64, rot13 and the like are not)."""
    if encoding != "bytes":
        try:
            "".encode(encoding)
        except LookupError:
            raise PreprocessError(f"--encoding {encoding} is not a known text encoding; try utf-8, latin-1 or "
                                  "bytes") from None


def check_paths(input_txt: Path, output_h5: Path, output_json: Path) -> None:
    """Fails before anything is written when a path is wrong."""
    if check_readable(input_txt, "--input_txt", PreprocessError).st_size == 0:
        raise PreprocessError(f"--input_txt {input_txt} {empty_file(input_txt)}; give a text file with at least 2 "
                              "characters")
    for flag, out in (("--output_h5", output_h5), ("--output_json", output_json)):
        if out.exists() and not out.is_file():  # a rename over a directory fails; over /dev/null it replaces it
            raise PreprocessError(f"{flag} {out} is a directory or a device, not a file; give a file name")
        try:
            same = out.resolve() == input_txt.resolve()
        except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symbolic link loop
            raise PreprocessError(f"{flag} {out} is a symbolic link loop; give a file name") from None
        if same:
            raise PreprocessError(f"{flag} {out} is the input file; choose another output path")
        if not out.parent.is_dir():
            raise PreprocessError(f"{flag} {out}: directory {out.parent} does not exist; create it first")
        if not os.access(out.parent, os.W_OK):
            raise PreprocessError(f"{flag} {out}: directory {out.parent} is not writable")
    if output_h5.resolve() == output_json.resolve():
        raise PreprocessError("--output_h5 and --output_json are the same file; give two paths")


def preprocess(
    input_txt: str | os.PathLike,
    output_h5: str | os.PathLike,
    output_json: str | os.PathLike,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    encoding: str = "utf-8",
    vocab: Vocab | None = None,
    unknown: str = "drop",
    quiet: bool = False,
    workers: int | None = None,
    unknown_report: UnknownReport | None = None,
) -> Vocab:
    """Writes torch-rnn's .h5/.json for ``input_txt`` and returns the vocabulary.

    Args:
        input_txt: the text file.
        output_h5: datasets ``train``, ``val``, ``test`` of 1-based indices (uint8 if ≤255 tokens).
        output_json: ``token_to_idx`` and ``idx_to_token``.
        val_frac: fraction of the characters for validation (taken after train).
        test_frac: fraction for test (taken last).
        encoding: a Python codec name (``utf-8``) or ``bytes`` for one token per byte.
        vocab: reuse this vocabulary (e.g. to fine-tune a model) instead of building one.
        unknown: with ``vocab``, ``drop`` leaves out characters outside it (reported with counts),
            ``error`` refuses the file.
        quiet: print nothing.
        workers: processes that read parts of the file side by side (default: one per available
            core, up to 8); a file gets at most one per ``MIN_PART_BYTES``. The output does not
            depend on it.
        unknown_report: how to name things when reporting unknown characters (default: this
            command's flags).
    """
    say = (lambda *a: None) if quiet else print
    for flag, path in (("--input_txt", input_txt), ("--output_h5", output_h5), ("--output_json", output_json)):
        if not os.fspath(path):
            raise PreprocessError(f"{flag} is empty; give a file name")
    input_txt, output_h5, output_json = Path(input_txt), Path(output_h5), Path(output_json)
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise PreprocessError(f"--val_frac {val_frac} and --test_frac {test_frac} must be ≥0 and sum to less than 1")
    check_encoding(encoding)
    if unknown not in ("drop", "error"):
        raise PreprocessError(f"--unknown {unknown}: choose drop or error")
    if workers is not None and workers < 1:
        raise PreprocessError(f"--workers {workers}: give at least 1")
    check_paths(input_txt, output_h5, output_json)
    unknown_report = unknown_report or UnknownReport(f"--input_txt {input_txt}", "--vocab", report=say)
    if vocab is not None and vocab.byte_level and encoding != "bytes":
        raise PreprocessError("--vocab is a byte vocabulary (tokens like [195]); pass --encoding bytes")

    parts = split_file(input_txt, encoding, part_count(input_txt.stat().st_size, encoding, workers))
    with _pool(len(parts)) as pool:  # terminated on leaving, also on an error
        sha256 = pool.apply_async(scan_sha256, (input_txt,))  # first, so that it overlaps the passes
        return _encode(input_txt, output_h5, output_json, val_frac, test_frac, encoding, vocab, unknown,
                       unknown_report, say, pool, parts, sha256)


def _pool(parts: int) -> Pool:
    """Processes for several parts (each reads and encodes at its own core); for one part, threads:
    the part and the SHA-256 side by side, without paying for starting processes."""
    return multiprocessing.get_context("fork").Pool(parts) if parts > 1 else ThreadPool(2)


def _in_order(pool: Pool, task: Callable[..., T], jobs: list[tuple]) -> list[T]:
    """``task(*job)`` for each job, run in ``pool``; the results (or the first job's error) in job order."""
    pending = [pool.apply_async(task, job) for job in jobs]
    return [p.get() for p in pending]


def _encode(input_txt: Path, output_h5: Path, output_json: Path, val_frac: float, test_frac: float, encoding: str,
            vocab: Vocab | None, unknown: str, unknown_report: UnknownReport, say: Callable[..., None], pool: Pool,
            parts: list[tuple[int, int]], sha256: AsyncResult[str]) -> Vocab:
    scans = _in_order(pool, scan, [(input_txt, encoding, vocab, start, stop) for start, stop in parts])
    found = merge_scans(scans)
    given = vocab
    if vocab is None:
        spell = byte_token if encoding == "bytes" else chr
        vocab = Vocab([spell(u) for u in found.units])
    if found.unknown:
        message = unknown_report.message(found.unknown, encoding)
        if unknown == "error":
            raise PreprocessError(f"{message}; pass {unknown_report.flag} drop to leave them out")
        (unknown_report.report or say)(f"{message} {unknown_report.dropped}")
    if found.total < 2:
        raise PreprocessError(f"--input_txt {input_txt} has {found.total} usable characters; at least 2 are needed")

    sizes = split_sizes(found.total, val_frac, test_frac)
    dtype = np.dtype(np.uint8 if len(vocab) <= 255 else "<u4")
    say(f"Total vocabulary size: {len(vocab)}")
    say(f"Total tokens in file: {found.total}")
    for label, size in zip(("Training", "Val", "Test"), sizes):
        say(f"  {label} size: {size}")
    say(f"Using dtype {dtype.name}")

    tmp_h5, tmp_json = temp_name(output_h5), temp_name(output_json)
    try:
        spans = _allocate_h5(tmp_h5, sizes, dtype)
        firsts = accumulate((part.total for part in scans), initial=0)  # index of each part's first unit
        jobs = [EncodeJob(input_txt, encoding, start, stop, first, part.total, vocab, bool(found.unknown), tmp_h5,
                          spans, dtype.str) for (start, stop), first, part in zip(parts, firsts, scans)]
        _write_parts(pool, jobs, tmp_h5)
        meta = vocab.to_json_dict()
        meta["charrnn"] = {
            "source_sha256": sha256.get(),
            **made_with(encoding, val_frac, test_frac, given),
            "unknown": {"count": found.unknown.total(), "most_common": found.unknown.most_common(SHOWN_UNKNOWN)},
            "splits": dict(zip(SPLITS, sizes)),
        }
        with open(tmp_json, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_h5, output_h5)
        os.replace(tmp_json, output_json)
        fsync_dir(output_h5.parent)
        fsync_dir(output_json.parent)
    except OSError as e:  # a full disk, a directory that refuses files: nothing is replaced
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise PreprocessError(f"--output_h5 {output_h5} / --output_json {output_json} could not be written ({first}); "
                              "files already there are left as they were") from None
    finally:
        for tmp in (tmp_h5, tmp_json):
            tmp.unlink(missing_ok=True)
    return vocab


@dataclass(frozen=True)
class Span:
    """Where one dataset's elements lie in the .h5 file."""

    first: int  # index of its first element among all the kept units of the file
    size: int
    offset: int | None  # file offset of its data; None when it is empty


def _allocate_h5(path: Path, sizes: tuple[int, ...], dtype: np.dtype) -> tuple[Span, ...]:
    """Creates the .h5 with its datasets allocated in place (contiguous, not filled), to be written
    by :func:`encode_part`, and says where each lies."""
    spans: list[Span] = []
    with h5py.File(path, "w", track_order=False) as f:
        for name, size, first in zip(SPLITS, sizes, accumulate(sizes, initial=0)):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            ds = f.create_dataset(name, shape=(size,), dtype=dtype, dcpl=dcpl)
            spans.append(Span(first, size, ds.id.get_offset()))
    return tuple(spans)


@dataclass(frozen=True)
class EncodeJob:
    """Pass 2 for one part of the file: its bytes ``start:stop`` hold the kept units ``first`` to
    ``first + count`` of the whole file."""

    input_txt: Path
    encoding: str
    start: int
    stop: int
    first: int
    count: int
    vocab: Vocab
    drop_unknown: bool
    output_h5: Path
    spans: tuple[Span, ...]
    dtype: str  # numpy's spelling, byte order included: |u1 or <u4


def _write_parts(pool: Pool, jobs: list[EncodeJob], path: Path) -> None:
    """Pass 2: runs the parts' jobs in ``pool`` and makes the file durable. Meanwhile what they have
    written so far is flushed, so that the disk works while they encode and the final fsync has little
    left to wait for."""
    pending = [pool.apply_async(encode_part, (job,)) for job in jobs]
    with open(path, "rb+") as f:
        for done in pending:
            while not done.ready():
                _flush(f.fileno())
                done.wait(FLUSH_SECONDS)
            done.get()
        os.fsync(f.fileno())


def encode_part(job: EncodeJob) -> None:
    """Encodes one part chunk by chunk and writes its indices in place into the allocated datasets."""
    table = job.vocab.lookup_table(unit_space(job.encoding))
    dtype = np.dtype(job.dtype)
    # For byte pieces: the index of each byte value as one byte (when every index fits), and the bytes to drop.
    byte_map = table[:256].astype(np.uint8).tobytes() if dtype.itemsize == 1 else None
    drop = _byte_values(table[:256] == 0) if job.drop_unknown else None
    at, end = job.first, job.first + job.count
    fd = os.open(job.output_h5, os.O_WRONLY)
    try:
        for piece in _pieces(job.input_txt, job.encoding, job.start, job.stop):
            ids = _indices(piece, table, byte_map, drop, dtype)
            if at + len(ids) > end:
                break
            _write(fd, ids, at, job.spans)
            at += len(ids)
    finally:
        os.close(fd)
    if at != end:
        raise PreprocessError(f"--input_txt {job.input_txt} changed while being read; run again")


def _write(fd: int, ids: np.ndarray, at: int, spans: tuple[Span, ...]) -> None:
    """Writes the indices of the units ``at``, ``at + 1``, ... into the datasets that hold them."""
    data, size = ids.data.cast("B"), ids.itemsize
    for span in spans:
        lo, hi = max(at, span.first), min(at + len(ids), span.first + span.size)
        if lo < hi:
            assert span.offset is not None
            view, offset = data[(lo - at) * size : (hi - at) * size], span.offset + (lo - span.first) * size
            while view:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done


def _indices(piece: Piece, table: np.ndarray, byte_map: bytes | None, drop: bytes | None,
             dtype: np.dtype) -> np.ndarray:
    """1-based indices of a piece's units, without the unknown ones when ``drop`` is given."""
    if isinstance(piece, bytes) and byte_map is not None:
        return np.frombuffer(piece.translate(byte_map, drop or b""), np.uint8)
    ids = table[np.frombuffer(piece, np.uint8) if isinstance(piece, bytes) else piece]
    if drop is not None:
        ids = ids[ids > 0]
    return ids.astype(dtype, copy=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charrnn.preprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--input_txt", required=True, help="text file to read")
    p.add_argument("--output_h5", required=True, help="HDF5 file to write (train/val/test datasets)")
    p.add_argument("--output_json", required=True, help="vocabulary JSON to write")
    p.add_argument("--val_frac", type=float, default=0.1)
    p.add_argument("--test_frac", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--encoding", default="utf-8", help="utf-8 (or any Python codec), or bytes")
    p.add_argument("--vocab", help="reuse this torch-rnn/charrnn vocabulary JSON (e.g. to fine-tune)")
    p.add_argument("--unknown", default="drop", choices=("drop", "error"),
                   help="with --vocab: leave out characters outside it (reported) or refuse the file")
    p.add_argument("--workers", type=int, default=None,
                   help="processes reading parts of a large file side by side (default: one per core, up to 8)")
    args = p.parse_args(argv)
    try:
        vocab = Vocab.load(args.vocab) if args.vocab else None
    except (FileNotFoundError, ValueError) as e:
        print(f"error: --vocab {e}", file=sys.stderr)
        return 2
    try:
        preprocess(args.input_txt, args.output_h5, args.output_json, args.val_frac, args.test_frac,
                   args.encoding, vocab, args.unknown, args.quiet, args.workers)
    except (PreprocessError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
