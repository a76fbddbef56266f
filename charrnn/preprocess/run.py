"""One preprocessing run: the settings checked, pass 1 over the file's parts, the characters outside a
given vocabulary refused or reported, the sizes printed, pass 2 and the files written. The file's SHA-256
is computed by one more task of the same pool meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from charrnn.preprocess.output import Layout, split_sizes, write_pair
from charrnn.preprocess.parts import in_order, part_count, split_file, worker_pool
from charrnn.preprocess.record import file_sha256
from charrnn.preprocess.scan import merge_scans, scan
from charrnn.preprocess.settings import PreprocessError, PreprocessSettings
from charrnn.preprocess.unknown import UnknownReport
from charrnn.vocab import Vocab


def preprocess(settings: PreprocessSettings, unknown_report: UnknownReport | None = None) -> Vocab:
    """Writes torch-rnn's .h5/.json for ``settings.input_txt`` and returns the vocabulary.

    Args:
        settings: what to read and write, and how.
        unknown_report: how to name things when reporting unknown characters (default: this
            command's flags).
    """
    say: Callable[..., None] = (lambda *a: None) if settings.quiet else print
    settings.check()
    report = unknown_report or UnknownReport(f"--input_txt {settings.input_txt}", "--vocab", report=say)
    text, encoding = settings.input_txt, settings.encoding
    parts = split_file(text, encoding, part_count(text.stat().st_size, encoding, settings.workers))
    with worker_pool(len(parts)) as pool:  # terminated on leaving, also on an error
        sha256 = pool.apply_async(file_sha256, (text,))  # first, so that it overlaps the passes
        scans = in_order(pool, scan, [(text, encoding, settings.vocab, start, stop) for start, stop in parts])
        found = merge_scans(scans)
        if found.unknown:
            report.apply(found.unknown, encoding, settings.unknown, say)
        if found.total < 2:
            raise PreprocessError(f"--input_txt {text} has {found.total} usable characters; at least 2 are needed")
        vocab = found.vocab(encoding) if settings.vocab is None else settings.vocab
        layout = Layout(vocab, parts, scans, split_sizes(found.total, settings.val_frac, settings.test_frac),
                        found.unknown)
        say(f"Total vocabulary size: {len(vocab)}")
        say(f"Total tokens in file: {found.total}")
        for label, size in zip(("Training", "Val", "Test"), layout.sizes):
            say(f"  {label} size: {size}")
        say(f"Using dtype {layout.dtype.name}")
        write_pair(settings, layout, pool, sha256)
    return vocab
