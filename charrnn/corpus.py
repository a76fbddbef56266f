"""The corpus behind training, without Lightning: where its files are, downloading it, preprocessing it
when the text or the settings changed, and which vocabulary it is encoded with."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

from charrnn.ckpt.atomic import atomic_write
from charrnn.ckpt.load import load_vocab
from charrnn.errors import MissingFileError, UsageError
from charrnn.preprocess import PreprocessError, UnknownReport, preprocess, scan_sha256
from charrnn.train_flags import as_data_flags
from charrnn.vocab import Vocab


class Corpus:
    """A text file preprocessed into torch-rnn's .h5/.json beside it (again whenever it changes), or a
    torch-rnn .h5/.json pair alone. The arguments are the DataModule's (``--data.*``); ``info`` and
    ``warn`` are where messages go (once per job under DDP: the DataModule passes Lightning's rank-zero
    functions)."""

    def __init__(self, input_txt: str | None, url: str | None, input_h5: str | None, input_json: str | None,
                 val_frac: float, test_frac: float, encoding: str, vocab_from: str | None,
                 unknown: Literal["drop", "error"], info: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> None:
        self.input_txt = Path(input_txt) if input_txt else None
        self.url, self.vocab_from, self.unknown = url, vocab_from, unknown
        self.val_frac, self.test_frac, self.encoding = val_frac, test_frac, encoding
        self.info, self.warn = info, warn
        self.fixed_vocab: Vocab | None = None
        stem = str(self.input_txt.with_suffix("")) if self.input_txt else ""
        if vocab_from:
            try:
                self.fixed_vocab = load_vocab(vocab_from)
            except (ValueError, FileNotFoundError) as e:
                raise UsageError(f"--data.vocab_from: {e}") from None
            digest = hashlib.sha256("\n".join(self.fixed_vocab.tokens).encode("utf-8", "surrogatepass"))
            stem += f".vocab-{digest.hexdigest()[:8]}"  # the corpus's own .h5/.json stay as they are
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

    def _is_current(self) -> bool:
        """Whether the .h5/.json were made from the present ``input_txt`` with the present settings."""
        if not (self.h5_path.is_file() and self.json_path.is_file()):
            return False
        try:  # anything unreadable (garbage, another kind of JSON) is made again
            data = json.loads(self.json_path.read_text())
            made = dict(data.get("charrnn", {}))
            if self.fixed_vocab is not None and Vocab.from_json_dict(data) != self.fixed_vocab:
                return False
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            return False
        wanted = {"encoding": self.encoding, "val_frac": self.val_frac, "test_frac": self.test_frac}
        same_settings = all(made.get(k) == v for k, v in wanted.items())
        return same_settings and made.get("source_sha256") == scan_sha256(self.input_txt)

    def prepare(self) -> None:
        """Downloads and preprocesses as needed; safe to call again (and from several processes)."""
        try:
            self._prepare()
        except PreprocessError as e:
            raise as_data_flags(e) from None

    def _prepare(self) -> None:
        if self.input_txt is None or self._prepared:
            return
        if not self.input_txt.exists():
            if self.h5_path.is_file() and self.json_path.is_file():
                return  # only the preprocessed files were kept: use them
            self._download()
        if not self._is_current():
            self.info(f"Preprocessing {self.input_txt} -> {self.h5_path}, {self.json_path}")
            report = UnknownReport(f"--data.input_txt {self.input_txt}",
                                   f"the vocabulary of --data.vocab_from {self.vocab_from}", "--data.unknown",
                                   "(left out: --data.unknown drop)", self.warn)
            preprocess(self.input_txt, self.h5_path, self.json_path, self.val_frac, self.test_frac,
                       self.encoding, vocab=self.fixed_vocab, unknown=self.unknown, quiet=True, unknown_report=report)
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
