#!/usr/bin/env bash
# The wheels the GPU machine lacks, downloaded here into .whl/ (ignored by git) to travel with the tree:
# jsonargparse and what its `signatures` extra needs (LightningCLI: train.py). Its other requirements,
# PyYAML and typing-extensions, are on that machine already. All three are pure Python (py3-none-any).
# Install there with (bench/README.md):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS=(jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0)
# One version of each: two would stop the install there.
rm -f .whl/jsonargparse-*.whl .whl/docstring_parser-*.whl .whl/typeshed_client-*.whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
