"""The corpus behind training, without Lightning: where its files are, downloading it, preprocessing it
when the text or the settings changed, and which vocabulary it is encoded with."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections import Counter
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

from charrnn.atomic import atomic_write
from charrnn.errors import MissingFileError, UsageError
from charrnn.preprocess import PreprocessError, PreprocessSettings, UnknownReport, preprocess
from charrnn.preprocess.record import file_sha256, made_with, vocab_digest
from charrnn.train_flags import as_data_flags
from charrnn.vocab import Vocab


class Corpus:
    """A text file preprocessed into torch-rnn's .h5/.json beside it (again whenever it changes), or a
    torch-rnn .h5/.json pair alone. The arguments are the DataModule's (``--data.*``), but for
    ``fixed_vocab``: the vocabulary that ``vocab_from`` names, already read (it may be a model's, and
    models are read by :mod:`charrnn.ckpt.load`, not here). ``info`` and ``warn`` are where messages go
    (once per job under DDP: the DataModule passes Lightning's rank-zero functions)."""

    def __init__(self, input_txt: str | None, url: str | None, input_h5: str | None, input_json: str | None,
                 val_frac: float, test_frac: float, encoding: str, vocab_from: str | None,
                 fixed_vocab: Vocab | None, unknown: Literal["drop", "error"], info: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> None:
        self.input_txt = Path(input_txt) if input_txt else None
        self.url, self.vocab_from, self.unknown = url, vocab_from, unknown
        self.val_frac, self.test_frac, self.encoding = val_frac, test_frac, encoding
        self.info, self.warn = info, warn
        self.fixed_vocab = fixed_vocab
        stem = str(self.input_txt.with_suffix("")) if self.input_txt else ""
        if fixed_vocab is not None:
            stem += f".vocab-{vocab_digest(self.fixed_vocab)[:8]}"  # the corpus's own .h5/.json stay as they are
        self.settings = made_with(encoding, val_frac, test_frac, self.fixed_vocab)
        self.h5_path = Path(input_h5) if input_h5 else Path(stem + ".h5")
        self.json_path = Path(input_json) if input_json else Path(stem + ".json")
        self._prepared = False  # prepare() ran in this process: the corpus is not hashed again

    def _download(self) -> None:
        assert self.input_txt is not None
        if not self.url:
            raise MissingFileError(
                f"--data.input_txt {self.input_txt} does not exist; put your corpus there, "
                "or set --data.url to download it"
            )
        self.info(f"Downloading {self.url} to {self.input_txt}")
        try:
            with urllib.request.urlopen(self.url, timeout=60) as r:
                atomic_write(self.input_txt, lambda f: shutil.copyfileobj(r, f, 1 << 20))
        except OSError as e:
            raise MissingFileError(
                f"--data.input_txt {self.input_txt} does not exist and downloading it from {self.url} failed ({e}); "
                f"download it yourself and put it at {self.input_txt}"
            ) from None

    def _recorded(self) -> dict | None:
        """What the .json says it was made from and with (``charrnn``), or None: no pair, a pair of another
        tool (torch-rnn's), or files that cannot be read (garbage, another kind of JSON)."""
        if not (self.h5_path.is_file() and self.json_path.is_file()):
            return None
        try:
            made = json.loads(self.json_path.read_text()).get("charrnn")
            return dict(made) if made is not None else None
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            return None

    def _changed(self, made: dict) -> list[str]:
        """The flags whose present value is not the one the files were made with."""
        flags = {"encoding": "--data.encoding", "val_frac": "--data.val_frac", "test_frac": "--data.test_frac",
                 "vocab_sha256": "--data.vocab_from"}
        return [flags[k] for k, v in self.settings.items() if made.get(k) != v]

    def _report(self) -> UnknownReport:
        return UnknownReport(f"--data.input_txt {self.input_txt}",
                             f"the vocabulary of --data.vocab_from {self.vocab_from}", "--data.unknown",
                             "(left out: --data.unknown drop)", self.warn)

    def _check_unknown(self, made: dict) -> None:
        """Files made with characters left out are used again only under ``--data.unknown drop``, which says so
        again; ``error`` refuses them as it refuses the text."""
        unknown = made.get("unknown") or {}
        if not unknown.get("count"):
            return
        report = self._report()
        counts = Counter({int(u): int(n) for u, n in unknown.get("most_common", [])})
        message = report.message(counts, self.encoding, int(unknown["count"]))
        if self.unknown == "error":
            raise UsageError(f"{message}; pass {report.flag} drop to leave them out")
        self.warn(f"{message} {report.left_out}")

    def prepare(self) -> None:
        """Downloads and preprocesses as needed; safe to call again (and from several processes)."""
        try:
            self._prepare()
        except PreprocessError as e:
            raise as_data_flags(e) from None

    def _prepare(self) -> None:
        if self.input_txt is None or self._prepared:
            return
        made = self._recorded()
        if not self.input_txt.exists() and self.h5_path.is_file() and self.json_path.is_file():
            # Only the preprocessed files were kept: used as they are, unless they say that they were made
            # with other settings (nothing to make them again from), and checked as the text would be.
            if made is not None:
                if changed := self._changed(made):
                    raise UsageError(f"--data.input_txt {self.input_txt} does not exist, and {self.json_path} was made "
                                     f"with another {', '.join(changed)}; put the text back to preprocess it again, "
                                     "or give the settings it was made with")
                self._check_unknown(made)
            self._prepared = True
            return
        if not self.input_txt.exists():
            self._download()
        if (made is None or self._changed(made) or made.get("source_sha256") != file_sha256(self.input_txt)
                or (self.unknown == "error" and (made.get("unknown") or {}).get("count"))):
            self.info(f"Preprocessing {self.input_txt} -> {self.h5_path}, {self.json_path}")
            preprocess(PreprocessSettings(self.input_txt, self.h5_path, self.json_path, self.val_frac, self.test_frac,
                                          self.encoding, vocab=self.fixed_vocab, unknown=self.unknown, quiet=True),
                       unknown_report=self._report())
        else:
            self._check_unknown(made)
        self._prepared = True

    @cached_property
    def vocab(self) -> list[str]:
        """The tokens in index order."""
        self.prepare()
        try:
            vocab = Vocab.load(self.json_path)
        except (ValueError, FileNotFoundError) as e:
            raise UsageError(f"--data.input_json: {e}") from None
        if self.fixed_vocab is not None and vocab != self.fixed_vocab:
            raise UsageError(f"--data.input_json {self.json_path} has another vocabulary than --data.vocab_from "
                             f"{self.vocab_from}; preprocess the corpus with --vocab (python -m charrnn.preprocess)")
        return vocab.tokens
