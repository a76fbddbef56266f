"""Text file -> torch-rnn's .h5/.json, streaming in two passes so memory stays flat.

Pass 1 reads the file in chunks to find the vocabulary (in order of first occurrence) and the
character count; pass 2 encodes it chunk by chunk into the train/val/test datasets. Both outputs
are written to temporary files beside their targets and moved into place only when complete, so a
crash or a bad input never destroys an existing pair.

Runs of ASCII are never decoded (see :mod:`charrnn.units`): their bytes are searched and mapped with
``bytes.translate``. The file's SHA-256 is computed on another thread meanwhile.

    python -m charrnn.preprocess --input_txt data/tiny-shakespeare.txt \\
        --output_h5 data/tiny-shakespeare.h5 --output_json data/tiny-shakespeare.json
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from charrnn.atomic import fsync_dir, temp_name
from charrnn.units import CHUNK_BYTES, DecodeError, Piece, read_units
from charrnn.vocab import Vocab, byte_token

BLOCK = 1 << 16
SPLITS = ("train", "val", "test")


class PreprocessError(ValueError):
    """A bad input or output named by its flag; the message says what to do."""


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


def unit_space(encoding: str) -> int:
    """How many distinct units a file can hold: bytes, or Unicode code points."""
    return 256 if encoding == "bytes" else 0x110000


def _new_bytes(chunk: bytes, known: bytes) -> list[int]:
    """Byte values of ``chunk`` not in ``known``, in order of first occurrence."""
    fresh = set(chunk.translate(None, known))
    return sorted(fresh, key=lambda b: chunk.index(b)) if fresh else []


def _pieces(path: Path, encoding: str) -> Iterator[Piece]:
    """The pieces of :func:`charrnn.units.read_units`, one by one; decoding errors name the flag."""
    try:
        for pieces in read_units(path, encoding):
            yield from pieces
    except DecodeError as e:
        raise PreprocessError(f"--input_txt {path} is not valid {encoding} at {e}; fix the file, "
                              "or pass --encoding bytes to model raw bytes") from None


def _byte_values(mask: np.ndarray) -> bytes:
    """The byte values (below 256) where ``mask`` is true."""
    return bytes(np.flatnonzero(mask[:256]).astype(np.uint8))


def scan(path: Path, encoding: str, vocab: Vocab | None) -> Scan:
    """Pass 1: vocabulary in order of first occurrence (or unknowns of a given vocabulary)."""
    result = Scan()
    space = unit_space(encoding)
    table = vocab.lookup_table(space) if vocab is not None else None
    known_bytes = _byte_values(table > 0) if table is not None else b""
    seen = np.zeros(space, dtype=bool)
    for units in _pieces(path, encoding):
        if isinstance(units, bytes):
            if table is not None:
                unknown = units.translate(None, known_bytes)
                result.total += len(units) - len(unknown)
                result.unknown.update(unknown)
            else:
                result.total += len(units)
                fresh = _new_bytes(units, _byte_values(seen))
                result.units.extend(fresh)
                seen[fresh] = True
            continue
        if table is not None:
            known = table[units] > 0
            result.total += int(np.count_nonzero(known))
            result.unknown.update(units[~known].tolist())
            continue
        result.total += len(units)
        # Small blocks keep the search for new units cheap: after the first few, almost none are new.
        for start in range(0, len(units), BLOCK):
            fresh = units[start : start + BLOCK]
            fresh = fresh[~seen[fresh]]  # in order of position
            if fresh.size:
                values, first = np.unique(fresh, return_index=True)
                result.units.extend(int(v) for v in values[np.argsort(first)])
                seen[values] = True
    return result


def split_sizes(total: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """torch-rnn's split: val and test are truncated fractions, train is the rest."""
    val, test = int(val_frac * total), int(test_frac * total)
    return total - val - test, val, test


def check_paths(input_txt: Path, output_h5: Path, output_json: Path) -> None:
    """Fails before anything is written when a path is wrong."""
    if not input_txt.is_file():
        raise PreprocessError(f"--input_txt {input_txt} does not exist (or is not a file)")
    if input_txt.stat().st_size == 0:
        raise PreprocessError(f"--input_txt {input_txt} is empty; give a text file with at least 2 characters")
    for flag, out in (("--output_h5", output_h5), ("--output_json", output_json)):
        if out.resolve() == input_txt.resolve():
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
    """
    say = (lambda *a: None) if quiet else print
    input_txt, output_h5, output_json = Path(input_txt), Path(output_h5), Path(output_json)
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise PreprocessError(f"--val_frac {val_frac} and --test_frac {test_frac} must be ≥0 and sum to less than 1")
    if encoding != "bytes":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise PreprocessError(f"--encoding {encoding} is not a known codec; try utf-8, latin-1 or bytes") from None
    if unknown not in ("drop", "error"):
        raise PreprocessError(f"--unknown {unknown}: choose drop or error")
    check_paths(input_txt, output_h5, output_json)
    if vocab is not None and vocab.byte_level and encoding != "bytes":
        raise PreprocessError("--vocab is a byte vocabulary (tokens like [195]); pass --encoding bytes")

    pool = ThreadPoolExecutor(1)  # hashes the file on another core while the two passes run
    sha256 = pool.submit(scan_sha256, input_txt)
    try:
        return _encode(input_txt, output_h5, output_json, val_frac, test_frac, encoding, vocab, unknown, say, sha256)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _encode(input_txt: Path, output_h5: Path, output_json: Path, val_frac: float, test_frac: float, encoding: str,
            vocab: Vocab | None, unknown: str, say: Callable[..., None], sha256: Future[str]) -> Vocab:
    found = scan(input_txt, encoding, vocab)
    if vocab is None:
        spell = byte_token if encoding == "bytes" else chr
        vocab = Vocab([spell(u) for u in found.units])
    if found.unknown:
        shown = ", ".join(f"{_show(u, encoding)}×{n}" for u, n in found.unknown.most_common(20))
        message = f"{sum(found.unknown.values())} characters of --input_txt {input_txt} are not in --vocab: {shown}"
        if unknown == "error":
            raise PreprocessError(message + "; pass --unknown drop to leave them out")
        say(message + " (left out)")
    if found.total < 2:
        raise PreprocessError(f"--input_txt {input_txt} has {found.total} usable characters; at least 2 are needed")

    sizes = split_sizes(found.total, val_frac, test_frac)
    dtype = np.uint8 if len(vocab) <= 255 else np.uint32
    say(f"Total vocabulary size: {len(vocab)}")
    say(f"Total tokens in file: {found.total}")
    for label, size in zip(("Training", "Val", "Test"), sizes):
        say(f"  {label} size: {size}")
    say(f"Using dtype {np.dtype(dtype).name}")

    tmp_h5, tmp_json = temp_name(output_h5), temp_name(output_json)
    try:
        _write_h5(tmp_h5, input_txt, encoding, vocab, sizes, dtype, drop_unknown=bool(found.unknown))
        meta = vocab.to_json_dict()
        meta["charrnn"] = {
            "source_sha256": sha256.result(),
            "encoding": encoding,
            "val_frac": val_frac,
            "test_frac": test_frac,
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
    finally:
        for tmp in (tmp_h5, tmp_json):
            tmp.unlink(missing_ok=True)
    return vocab


def _show(unit: int, encoding: str) -> str:
    return byte_token(unit) if encoding == "bytes" else repr(chr(unit))


def _write_h5(path: Path, input_txt: Path, encoding: str, vocab: Vocab, sizes: tuple[int, ...], dtype: type,
              drop_unknown: bool) -> None:
    """Pass 2: encodes the file chunk by chunk into contiguous datasets."""
    table = vocab.lookup_table(unit_space(encoding))
    # For byte chunks: the index of each byte value as one byte (when every index fits), and the bytes to drop.
    byte_map = table[:256].astype(np.uint8).tobytes() if dtype == np.uint8 else None
    unknown_bytes = _byte_values(table == 0)
    with ExitStack() as stack:
        f = stack.enter_context(h5py.File(path, "w", track_order=False))
        datasets = [f.create_dataset(name, shape=(size,), dtype=dtype) for name, size in zip(SPLITS, sizes)]
        split, pos = 0, 0
        for pieces in read_units(input_txt, encoding):  # already read once by scan: no decoding errors
            parts = [_indices(piece, table, byte_map, unknown_bytes if drop_unknown else None, dtype)
                     for piece in pieces]
            if not parts:
                continue
            ids = np.concatenate(parts) if len(parts) > 1 else parts[0]
            while len(ids):
                while split < len(sizes) and pos == sizes[split]:
                    split, pos = split + 1, 0
                take = min(len(ids), sizes[split] - pos)
                datasets[split][pos : pos + take] = ids[:take]
                pos, ids = pos + take, ids[take:]
        f.flush()
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _indices(piece: Piece, table: np.ndarray, byte_map: bytes | None, drop: bytes | None,
             dtype: type) -> np.ndarray:
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
    args = p.parse_args(argv)
    try:
        vocab = Vocab.load(args.vocab) if args.vocab else None
        preprocess(args.input_txt, args.output_h5, args.output_json, args.val_frac, args.test_frac,
                   args.encoding, vocab, args.unknown, args.quiet)
    except (PreprocessError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
