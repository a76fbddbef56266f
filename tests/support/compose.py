"""Reading compose.yaml and the Dockerfile as the container tests need them."""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

from tests.support.paths import ROOT


def load(name: str) -> dict:
    """A YAML file of the repository, parsed."""
    return yaml.safe_load((ROOT / name).read_text())


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation, the forms compose.yaml uses: ``${NAME:-default}`` and ``$$``."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)
    return value.replace("$$", "$")


def command(name: str, env: Mapping[str, str] = {}) -> list[str]:  # noqa: B006 (read only)
    """The command of service ``name`` in compose.yaml, its variables filled in from ``env`` or their defaults."""
    return [interpolate(arg, env) for arg in load("compose.yaml")["services"][name]["command"]]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (instruction, arguments) pairs, continued lines joined and comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]
