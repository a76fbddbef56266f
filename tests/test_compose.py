"""compose.yaml, compose.gpu.yaml, the Dockerfile and .dockerignore, checked without a Docker engine.

The files are validated against the Compose Specification's JSON schema, which check-jsonschema
ships (Apache-2.0, its licence beside it in that package), so the check runs offline.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from tests.support.compose import command, dockerfile_instructions, interpolate, load
from tests.support.paths import ROOT

COMPOSE_FILES = ("compose.yaml", "compose.gpu.yaml")
DATA_MOUNT = "${DATA_DIR:-./data}:/data"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_specification(validator: jsonschema.protocols.Validator, name: str) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(load(name))]
    assert not errors, f"{name} breaks the Compose Specification:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "path, value",
    [
        (("services", "serve", "ports"), "127.0.0.1:8080:8080"),  # a list is required
        (("services", "train", "deploy"), {"resources": {"reservations": {"gpus": "all"}}}),  # unknown key
        (("services", "tensorboard", "comand"), ["tensorboard"]),  # misspelt key
    ],
)
def test_the_schema_rejects_broken_files(validator: jsonschema.protocols.Validator, path: tuple, value: object) -> None:
    broken = copy.deepcopy(load("compose.yaml"))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not validator.is_valid(broken)


def test_every_service_shares_the_data_directory() -> None:
    services = load("compose.yaml")["services"]
    assert set(services) == {"preprocess", "train", "sample", "serve", "tensorboard"}
    for name, service in services.items():
        assert DATA_MOUNT in service["volumes"], name
        assert service["working_dir"] == "/data", name
        assert service["image"] == "charrnn:cpu", name


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("service, port", [("serve", "8080"), ("tensorboard", "6006")])
def test_servers_listen_in_the_container_and_publish_on_loopback(service: str, port: str) -> None:
    spec = load("compose.yaml")["services"][service]
    assert flag(spec["command"], "--host") == "0.0.0.0"  # the default 127.0.0.1 is unreachable from the host
    assert flag(spec["command"], "--port") == port
    assert spec["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "profiles" not in spec  # `docker compose up` starts it


def test_jobs_stay_out_of_compose_up() -> None:
    services = load("compose.yaml")["services"]
    for name in ("preprocess", "train", "sample"):
        assert services[name]["profiles"] == ["jobs"], name


def test_gpu_override_reserves_gpus_for_training_on_the_cuda_image() -> None:
    train = load("compose.gpu.yaml")["services"]["train"]
    assert train["image"] == "charrnn:cuda"
    assert train["build"]["args"]["TORCH_INDEX"] == "https://pypi.org/simple"
    (device,) = train["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def copied_to_app() -> set[str]:
    """What the Dockerfile copies from the build context into /app."""
    copied = set()
    workdir = ""
    for op, rest in dockerfile_instructions():
        if op == "WORKDIR":
            workdir = rest
        elif op == "COPY" and not rest.startswith("--from") and workdir == "/app":
            *sources, _ = rest.split()
            copied.update(sources)
    return copied


def test_the_image_has_the_configs_and_the_callback_overlays() -> None:
    assert {"train.py", "configs", "callbacks"} <= copied_to_app()


def test_container_paths_exist_in_the_image() -> None:
    """Every /app/... file that a compose command names is copied into /app by the Dockerfile."""
    copied = copied_to_app()
    for name in load("compose.yaml")["services"]:
        for arg in (word for part in command(name) for word in part.split()):
            if arg.startswith("/app/"):
                relative = arg.removeprefix("/app/")
                assert (ROOT / relative).is_file(), f"{name}: {arg} has no {relative} in the repository"
                assert relative in copied or relative.split("/")[0] in copied, f"{name}: {arg} is not copied to /app"


def test_image_is_pinned_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for op, rest in instructions if op == "ARG" and "=" in rest)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest.split()[0]) for op, rest in instructions if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base) for base in bases), bases
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")}
    assert {".git", ".venv", "data", "checkpoints", "lightning_logs"} <= ignored
    for op, rest in dockerfile_instructions():
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            assert not set(sources) & ignored, f"COPY {rest} copies what .dockerignore leaves out"


def make_docker(target: str, tmp_path: Path, *variables: str) -> dict[str, str]:
    """The CHARRNN_* environment that ``make TARGET DOCKER=1 VARIABLES...`` gives compose (a stand-in
    that records it, so no Docker engine is needed)."""
    fake = tmp_path / "compose"
    fake.write_text(f"#!/bin/sh\nenv | grep '^CHARRNN_' > {tmp_path}/env\n")
    fake.chmod(0o755)
    subprocess.run(["make", "-s", "-C", str(ROOT), target, "DOCKER=1", f"COMPOSE={fake}",
                    f"DATA_DIR={tmp_path / 'data'}", *variables], check=True, capture_output=True)
    return dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())


def train_argv(env: Mapping[str, str]) -> list[str]:
    """The train service's command as its shell runs it (``python`` standing for the real one)."""
    sh, c, script, *args = command("train", env)
    assert (sh, c) == ("sh", "-c") and script.startswith("exec python ")
    script = script.replace("exec python ", "printf '%s\\n' python ", 1)
    out = subprocess.run([sh, c, script, *args], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_train_service_runs_the_default_experiment_without_make() -> None:
    assert train_argv({}) == ["python", "/app/train.py", "fit", "--config", "/app/configs/shakespeare.yaml",
                              "--config", "/app/configs/docker.yaml"]


def test_make_train_docker_passes_config_and_args(tmp_path: Path) -> None:
    env = make_docker("train", tmp_path, "CONFIG=configs/debug.yaml", "ARGS=--trainer.max_steps 5 --model.rnn_size 16")
    assert train_argv(env) == ["python", "/app/train.py", "fit", "--config", "/app/configs/debug.yaml",
                               "--config", "/app/configs/docker.yaml", "--trainer.max_steps", "5",
                               "--model.rnn_size", "16"]
    # an absolute CONFIG is a path inside the container, e.g. a config in the data directory
    env = make_docker("train", tmp_path, "CONFIG=/data/mine.yaml")
    assert train_argv(env)[3:5] == ["--config", "/data/mine.yaml"]


@pytest.mark.parametrize("target", ["sample", "serve"])
def test_make_sample_and_serve_docker_pass_ckpt(tmp_path: Path, target: str) -> None:
    assert flag(command(target), "--ckpt") == "/data/checkpoints/shakespeare/last.ckpt"
    env = make_docker(target, tmp_path)  # the Makefile's default CKPT, in the data directory
    assert flag(command(target, env), "--ckpt") == "/data/checkpoints/shakespeare/last.ckpt"
    env = make_docker(target, tmp_path, "CKPT=checkpoints/debug/step=20.ckpt")
    assert flag(command(target, env), "--ckpt") == "/data/checkpoints/debug/step=20.ckpt"


def test_every_service_builds_the_image_when_missing_and_never_pulls_it() -> None:
    for name, spec in load("compose.yaml")["services"].items():
        assert spec["pull_policy"] == "never" and spec["build"]["context"] == ".", name


def test_make_build_docker_builds_the_image_once(tmp_path: Path) -> None:
    """Every service shares the image: `compose build` of all of them would build it once per service."""
    fake = tmp_path / "compose"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    fake.chmod(0o755)
    for gpu in ([], ["GPU=1"]):
        subprocess.run(["make", "-s", "-C", str(ROOT), "build", "DOCKER=1", f"COMPOSE={fake}", *gpu], check=True,
                       capture_output=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [call.split()[-2:] for call in calls] == [["build", "train"], ["build", "train"]], calls
    assert "compose.gpu.yaml" not in calls[0] and "compose.gpu.yaml" in calls[1]


def test_hints_inside_the_containers_name_what_to_run_on_the_host(tmp_path: Path) -> None:
    services = load("compose.yaml")["services"]
    for name, spec in services.items():
        assert interpolate(spec["environment"]["CHARRNN_LAUNCHER"], {}) == "compose", name
    assert interpolate(services["train"]["environment"]["CHARRNN_LAUNCHER"], {"CHARRNN_LAUNCHER": "make"}) == "make"
    published = services["serve"]["ports"][0].rsplit(":", 1)[0]  # 127.0.0.1:8080
    assert services["serve"]["environment"]["CHARRNN_PUBLIC_URL"] == f"http://{published}"
    assert make_docker("sample", tmp_path)["CHARRNN_LAUNCHER"] == "make"


def preprocess_argv(env: Mapping[str, str]) -> list[str]:
    """The preprocess service's command as its shell runs it (``python`` standing for the real one)."""
    sh, c, script, *args = command("preprocess", env)
    assert (sh, c) == ("sh", "-c") and "exec python " in script
    script = script.replace("exec python ", "printf '%s\\n' python ", 1)
    return subprocess.run([sh, c, script, *args], capture_output=True, text=True, check=True).stdout.splitlines()


def test_make_preprocess_docker_passes_input(tmp_path: Path) -> None:
    assert preprocess_argv({}) == ["python", "-m", "charrnn.preprocess", "--input_txt", "/data/tiny-shakespeare.txt",
                                   "--output_h5", "/data/generated/tiny-shakespeare.h5",
                                   "--output_json", "/data/generated/tiny-shakespeare.json"]
    env = make_docker("preprocess", tmp_path, f"INPUT={tmp_path / 'data' / 'poems' / 'mine.v2.txt'}")
    assert env["CHARRNN_INPUT"] == "/data/poems/mine.v2.txt"
    argv = preprocess_argv(env)
    assert [flag(argv, f) for f in ("--input_txt", "--output_h5", "--output_json")] == [
        "/data/poems/mine.v2.txt", "/data/generated/mine.v2.h5", "/data/generated/mine.v2.json"]


def test_make_preprocess_docker_refuses_an_input_outside_the_data_directory(tmp_path: Path) -> None:
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "preprocess", "DOCKER=1", "COMPOSE=false",
                           f"DATA_DIR={tmp_path / 'data'}", f"INPUT={tmp_path / 'elsewhere.txt'}"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert f"error: INPUT={tmp_path / 'elsewhere.txt'} is outside DATA_DIR={tmp_path / 'data'}" in done.stderr
