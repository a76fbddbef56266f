"""Text file -> torch-rnn's .h5/.json (``python -m charrnn.preprocess``), streaming in two passes so memory
stays flat; a large file is read by several processes side by side, and the output does not depend on how many.

- ``settings``: ``PreprocessSettings``, the options of one run, and their checks.
- ``parts``: the file cut into parts on character boundaries, and the pool that reads them.
- ``reading``: the text in pieces of code points (or bytes), decoding errors naming the flag.
- ``scan``: pass 1, the vocabulary in order of first occurrence (or the units a given one lacks).
- ``unknown``: the characters outside a given vocabulary (``--vocab``), refused or reported as left out.
- ``encode``: pass 2, each part's indices written in place into the .h5's datasets.
- ``record``: what the .json records about how it was made (the text's SHA-256, the settings).
- ``output``: the .h5's layout, and the pair written together through ``atomic_write_all``.
- ``run``: :func:`preprocess`, one run from settings to files.
- ``cli``: the command line, with torch-rnn's flags.

    python -m charrnn.preprocess --input_txt data/tiny-shakespeare.txt \\
        --output_h5 data/tiny-shakespeare.h5 --output_json data/tiny-shakespeare.json
"""

from charrnn.preprocess.cli import main
from charrnn.preprocess.run import preprocess
from charrnn.preprocess.settings import PreprocessError, PreprocessSettings, check_encoding
from charrnn.preprocess.unknown import UnknownReport

__all__ = ["PreprocessError", "PreprocessSettings", "UnknownReport", "check_encoding", "main", "preprocess"]
