"""`llama-bake smoke`'s own logic, on a fake engine and a fake HTTP client (the engine tier runs the real one)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from llama_bake.buildx.launch import Launch
from llama_bake.buildx.smoke import api_key_of, launch_for, result_line, smoke_one
from llama_bake.errors import DockerError, UsageError
from llama_bake.plan.ir import Shape, Target


class FakeContainers:
    def __init__(self, exit_after: int | None = None) -> None:
        self.exit_after = exit_after
        self.polls = 0
        self.started: list[Launch] = []
        self.removed: list[str] = []

    def start(self, launch: Launch) -> str:
        self.started.append(launch)
        return "c1"

    def exited(self, container: str) -> int | None:
        self.polls += 1
        return 1 if self.exit_after is not None and self.polls >= self.exit_after else None

    def logs(self, container: str) -> str:
        return "loading model\nerror: the file is not a GGUF\n"

    def remove_container(self, container: str) -> None:
        self.removed.append(container)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


LAUNCH = Launch("reg/m1:latest", {}, 18080, 8080, False, "")


def server(healthy_after: int, completion: dict[str, object] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def get(
        url: str, body: bytes | None, timeout: float, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        calls.append(url)
        if url.endswith("/health"):
            return (200, b"{}") if len(calls) > healthy_after else (503, b"loading")
        assert body is not None
        assert json.loads(body)["n_predict"] == 8
        return status, json.dumps(completion or {}).encode()

    return get, calls


def test_a_healthy_server_that_answers_a_completion_passes_with_its_figures() -> None:
    clock = Clock()
    containers = FakeContainers()
    get, calls = server(3, {"content": " Paris.", "tokens_predicted": 8, "timings": {"predicted_per_second": 41.5}})
    result = smoke_one(containers, "m1", LAUNCH, 60, get, clock, clock.sleep)
    assert result.ok
    assert result.seconds_to_healthy == 1.5  # three 503s, half a second apart
    assert (result.tokens, result.tokens_per_second, result.detail) == (8, 41.5, "Paris.")
    assert calls[-1] == "http://127.0.0.1:18080/completion"
    assert containers.removed == ["c1"]
    assert result_line(result).startswith("ok   m1 (reg/m1:latest, CPU): healthy in 1.5s, 8 tokens, 41.5 tokens/s")


def test_a_container_that_exits_before_it_is_healthy_fails_with_its_log_and_is_removed() -> None:
    clock = Clock()
    containers = FakeContainers(exit_after=2)
    get, _ = server(1000)
    result = smoke_one(containers, "m1", LAUNCH, 60, get, clock, clock.sleep)
    assert not result.ok
    assert "exited with 1 before it was healthy" in result.detail
    assert "not a GGUF" in result.detail
    assert containers.removed == ["c1"]


def test_a_server_never_healthy_fails_at_the_timeout() -> None:
    clock = Clock()
    containers = FakeContainers()
    get, _ = server(10_000)
    result = smoke_one(containers, "m1", LAUNCH, 5, get, clock, clock.sleep)
    assert not result.ok
    assert "/health not 200 within 5s (last: HTTP 503)" in result.detail
    assert clock.now == pytest.approx(5.5)
    assert containers.removed == ["c1"]


@pytest.mark.parametrize(
    ("completion", "status", "said"),
    [({"content": "", "tokens_predicted": 0}, 200, "no token"), ({}, 500, "HTTP 500")],
)
def test_a_completion_without_tokens_or_with_an_error_fails(
    completion: dict[str, object], status: int, said: str
) -> None:
    clock = Clock()
    get, _ = server(0, completion, status)
    result = smoke_one(FakeContainers(), "m1", LAUNCH, 60, get, clock, clock.sleep)
    assert not result.ok
    assert said in result.detail
    assert result.seconds_to_healthy == 0.0


def test_the_gpu_is_used_for_a_cuda_base_when_the_engine_has_one_and_never_with_cpu() -> None:
    args = {"ENV_LLAMA_ARG_PORT": "8081"}
    on_runtime = launch_for(args, "i", "cuda", "auto", "the nvidia runtime", 1234, False)
    assert (on_runtime.gpu, on_runtime.container_port, dict(on_runtime.env)) == ("runtime", 8081, {})
    on_cdi = launch_for(args, "i", "cuda", "auto", "CDI devices (nvidia.com/gpu=0)", 1234, False)
    assert on_cdi.gpu == "nvidia.com/gpu=all"
    no_gpu = launch_for(args, "i", "cuda", "auto", "", 1234, False)
    assert (no_gpu.gpu, dict(no_gpu.env)) == ("", {"LLAMA_ARG_N_GPU_LAYERS": "0"})
    forced_cpu = launch_for(args, "i", "cuda", "cpu", "the nvidia runtime", 1234, False)
    assert forced_cpu.gpu == ""
    cpu_base = launch_for(args, "i", "cpu", "auto", "the nvidia runtime", 1234, False)
    assert cpu_base.gpu == ""
    with pytest.raises(DockerError, match="NVIDIA Container Toolkit"):
        launch_for(args, "i", "cuda", "gpu", "", 1234, False)


def test_on_the_host_network_the_server_listens_on_loopback_at_the_chosen_port() -> None:
    launch = launch_for({"ENV_LLAMA_ARG_PORT": "8080"}, "i", "cpu", "auto", "", 40001, True)
    assert launch.env["LLAMA_ARG_HOST"] == "127.0.0.1"
    assert launch.env["LLAMA_ARG_PORT"] == "40001"
    assert (launch.host_port, launch.container_port, launch.host_network) == (40001, 40001, True)


def keyed_server(key: str, refuses: bool = True):  # type: ignore[no-untyped-def]
    """A healthy server that answers a completion only with ``Authorization: Bearer KEY`` (when ``refuses``)."""
    seen: list[str | None] = []

    def get(
        url: str, body: bytes | None, timeout: float, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        if url.endswith("/health"):
            return 200, b"{}"
        given = (headers or {}).get("Authorization")
        seen.append(given)
        if refuses and given != f"Bearer {key}":
            return 401, b'{"error": {"code": 401}}'
        return 200, json.dumps({"content": " Paris", "tokens_predicted": 8}).encode()

    return get, seen


def test_with_an_api_key_the_completion_is_refused_without_it_and_answered_with_it() -> None:
    clock = Clock()
    get, seen = keyed_server("k-123")
    result = smoke_one(FakeContainers(), "m1", replace(LAUNCH, api_key="k-123"), 60, get, clock, clock.sleep)
    assert result.ok, result.detail
    assert seen == [None, "Bearer k-123"]
    assert "k-123" not in repr(replace(LAUNCH, api_key="k-123"))


def test_a_key_that_does_not_protect_the_server_fails_the_smoke() -> None:
    clock = Clock()
    get, _ = keyed_server("k-123", refuses=False)
    result = smoke_one(FakeContainers(), "m1", replace(LAUNCH, api_key="k-123"), 60, get, clock, clock.sleep)
    assert not result.ok
    assert "/completion without the API key answered HTTP 200, not 401" in result.detail


def keyed_target(api_key: tuple[str, str]) -> Target:
    return Target("m1", "model", "", Shape(kind="model"), "b", (), (), (), (), api_key=api_key)


def test_the_key_is_read_from_the_variable_or_the_first_key_line_of_the_file(tmp_path: Path) -> None:
    assert api_key_of(keyed_target(("env", "TEAM_KEY")), tmp_path, {"TEAM_KEY": "k-env\n"}) == "k-env"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "m.key").write_text("# the team's key\nk-file\n", encoding="utf-8")
    assert api_key_of(keyed_target(("file", "secrets/m.key")), tmp_path, {}) == "k-file"
    assert api_key_of(Target("m1", "model", "", Shape(kind="model"), "b", (), (), (), ()), tmp_path, {}) == ""


def test_a_missing_key_names_the_variable_or_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"model m1: its API key .* the environment variable TEAM_KEY, which is not set"
    ):
        api_key_of(keyed_target(("env", "TEAM_KEY")), tmp_path, {})
    with pytest.raises(UsageError, match=r"gone\.key, which cannot be read"):
        api_key_of(keyed_target(("file", "gone.key")), tmp_path, {})
