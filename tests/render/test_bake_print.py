"""Real buildx reads the generated file exactly as intended (``docker buildx bake --print``, no builder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llama_bake.buildx.client import DockerRunner, bake_print
from llama_bake.buildx.invocation import with_bases
from llama_bake.cli import main
from llama_bake.companions import compose_text
from llama_bake.errors import DockerError
from llama_bake.plan.ir import BakePlan, Interp
from llama_bake.project import Paths, compile_catalog, plan_catalog
from tests.conftest import BASE, MODEL, REPO, WriteCatalog

pytestmark = [pytest.mark.bake, pytest.mark.usefixtures("buildx")]
GOLDEN = Path(__file__).parent / "golden"


def unprint(value: str) -> str:
    """--print writes its JSON so that it can be read back as a bake file: `${` and `%{` come doubled."""
    return value.replace("$${", "${").replace("%%{", "%{")


def resolved(paths: Paths, targets: list[str], variables: dict[str, str] | None = None) -> dict[str, Any]:
    text = compile_catalog(paths).text
    return bake_print(text, targets, variables or {}, paths.bake_dir, DockerRunner())


def as_resolved(plan: BakePlan, items: tuple[tuple[str, str | Interp], ...]) -> dict[str, str]:
    """Args or labels as bake resolves them with no git values set: a conditional one is left out."""
    values = {k: v if isinstance(v, str) else plan.value_of(v) for k, v in items}
    return {k: v for k, v in values.items() if v or isinstance(dict(items)[k], str)}


def catalog_paths(case: str, tmp_path: Path) -> Paths:
    if case == "shipped":
        shutil.copytree(REPO / "catalog", tmp_path / "catalog")
    else:
        shutil.copytree(GOLDEN / case / "catalog", tmp_path / "catalog")
    return Paths.from_options(tmp_path / "catalog", None)


@pytest.mark.parametrize("case", ["shipped", "multi", "families", "vulkan"])
def test_buildx_resolves_every_target_as_planned(case: str, tmp_path: Path) -> None:
    paths = catalog_paths(case, tmp_path)
    compiled = compile_catalog(paths)
    plan = compiled.plan
    config = resolved(paths, [t.name for t in plan.targets])
    assert sorted(config["target"]) == sorted(t.name for t in plan.targets)
    for target in plan.targets:
        got = config["target"][target.name]
        assert got["contexts"] == dict(target.contexts)
        assert {k: unprint(v) for k, v in got["args"].items()} == as_resolved(plan, target.args)
        assert {k: unprint(v) for k, v in got["labels"].items()} == as_resolved(plan, target.labels)
        assert got["tags"] == [t for t in (plan.value_of(t) for t in target.tags) if t]
        assert got["dockerfile"] == target.dockerfile
        assert target.dockerfile in compiled.dockerfiles
        assert "cache-from" not in got
        assert "cache-to" not in got
        if target.kind == "model":
            assert got["contexts"]["base"] == f"target:{target.base}"


@pytest.mark.parametrize("case", ["shipped", "multi"])
def test_buildx_resolves_every_group(case: str, tmp_path: Path) -> None:
    paths = catalog_paths(case, tmp_path)
    plan = compile_catalog(paths).plan
    for group in plan.groups:
        config = resolved(paths, [group.name])
        assert config["group"][group.name]["targets"] == list(group.targets)
        # buildx resolves a group to its targets and the bases they are linked to through `target:`.
        assert sorted(config["target"]) == with_bases(plan, list(group.targets))


def test_default_group_builds_every_model(tmp_path: Path) -> None:
    paths = catalog_paths("shipped", tmp_path)
    plan = compile_catalog(paths).plan
    config = resolved(paths, [])
    assert config["group"]["default"]["targets"] == sorted(t.name for t in plan.targets if t.kind == "model")


def test_environment_overrides_registry_and_tag(tmp_path: Path) -> None:
    paths = catalog_paths("shipped", tmp_path)
    config = resolved(paths, ["gpt-oss-20b-abliterated"], {"REGISTRY": "ghcr.io/acme", "TAG": "v9"})
    tags = config["target"]["gpt-oss-20b-abliterated"]["tags"]
    assert tags[0] == "ghcr.io/acme/gpt-oss-20b-abliterated:v9"


@pytest.mark.parametrize(
    ("cache_type", "ref", "expect_from", "expect_to"),
    [
        ("local", "/cache", "type=local,src=/cache/{t}", "type=local,dest=/cache/{t},mode=max"),
        ("gha", "", "type=gha,scope=llama-bake-{t}", "type=gha,scope=llama-bake-{t},mode=max"),
        (
            "registry",
            "localhost:5000/cache",
            "type=registry,ref=localhost:5000/cache/{t}:buildcache",
            "type=registry,ref=localhost:5000/cache/{t}:buildcache,mode=max",
        ),
    ],
)
def test_each_target_gets_its_own_cache(
    cache_type: str, ref: str, expect_from: str, expect_to: str, tmp_path: Path
) -> None:
    paths = catalog_paths("shipped", tmp_path)
    plan = compile_catalog(paths).plan
    names = [t.name for t in plan.targets]
    config = resolved(paths, names, {"CACHE_TYPE": cache_type, "CACHE_REF": ref})
    seen = set()
    for name in names:
        got = config["target"][name]
        base = plan.target(name).base
        # A model also reads its base's cache (one cache-to, many cache-from).
        sources = [name] if base is None else [name, base]
        assert got["cache-from"] == [as_entry(expect_from.format(t=t)) for t in sources]
        assert len(got["cache-to"]) == 1
        assert got["cache-to"][0] == as_entry(expect_to.format(t=name))
        seen.add(json.dumps(got["cache-to"][0], sort_keys=True))
    assert len(seen) == len(names)


def test_an_unknown_cache_type_is_refused_by_the_file_itself(tmp_path: Path) -> None:
    paths = catalog_paths("shipped", tmp_path)
    with pytest.raises(DockerError, match="CACHE_TYPE must be"):
        resolved(paths, ["default"], {"CACHE_TYPE": "s3"})


def as_entry(spec: str) -> dict[str, str]:
    """``type=local,dest=x`` as --print shows it: an object."""
    return dict(item.split("=", 1) for item in spec.split(","))


# Characters that stress every layer: HCL escapes and template markers, Jinja delimiters, shell and
# Dockerfile metacharacters, control characters and non-ASCII. Surrogates cannot be written to a file.
_alphabet = st.characters(exclude_categories=["Cs"])
_tricky = st.sampled_from(
    [
        '"',
        "\\",
        "${",
        "%{",
        "{#",
        "}}",
        "{{",
        "$",
        "%",
        "\n",
        "\r",
        "\t",
        "\x00",
        "\x1b",
        "é",
        "🦙",
        "\u2028",
        "$${",
        "%%{",
        "\\n",
    ]
)
_text = st.lists(st.one_of(_tricky, st.text(_alphabet, max_size=4)), max_size=8).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_text, min_size=1, max_size=6))
def test_arbitrary_strings_come_back_unchanged_from_buildx(
    values: list[str], write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    labels = {f"com.example.v{i}": v for i, v in enumerate(values)}
    model = {
        **MODEL,
        "description": "d" + values[0],
        "labels": labels,
        "server": {
            "env": {f"X_{i}": v.replace("\n", "").replace("\r", "").replace("\x00", "") for i, v in enumerate(values)}
        },
    }
    catalog = write_catalog(bases={"llama-cpp-cuda": BASE}, models={"m": model}, project={"labels": {"p": values[-1]}})
    paths = Paths.from_options(catalog, tmp_path / "docker-bake.hcl")
    got = resolved(paths, ["m"])["target"]["m"]
    nfc = {k: unicodedata.normalize("NFC", v) for k, v in labels.items()}
    assert {k: unprint(got["labels"][k]) for k in labels} == nfc
    assert unprint(got["labels"]["p"]) == unicodedata.normalize("NFC", values[-1])
    # --print doubles `${`/`%{` in args and labels, but prints `description` as it is.
    assert got["description"] == unicodedata.normalize("NFC", "d" + values[0])
    for i, v in enumerate(values):
        clean = v.replace("\n", "").replace("\r", "").replace("\x00", "")
        assert unprint(got["args"][f"ENV_X_{i}"]) == unicodedata.normalize("NFC", clean)


@pytest.mark.parametrize("case", ["shipped", "multi", "vulkan"])
def test_buildx_reads_the_compose_file_as_the_same_targets_as_the_bake_file(case: str, tmp_path: Path) -> None:
    """`docker buildx bake -f compose.yaml --print`: every service is its bake target (Dockerfile, args, labels,
    contexts with `service:` read back as `target:`), and the image is the target's first tag."""
    paths = catalog_paths(case, tmp_path)
    compose = paths.bake_dir / "compose.yaml"
    compose.write_text(compose_text(paths, compose, "llama-bake compose")[0], encoding="utf-8")
    plan = plan_catalog(paths)[1]
    printed = subprocess.run(
        ["docker", "buildx", "bake", "-f", "compose.yaml", "--print", *[t.name for t in plan.targets]],
        cwd=paths.bake_dir,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("REGISTRY", "TAG")} | KEY_ENV,
    )
    assert printed.returncode == 0, printed.stderr
    targets = json.loads(printed.stdout)["target"]
    assert set(targets) == {t.name for t in plan.targets}
    for target in plan.targets:
        got = targets[target.name]
        assert got["dockerfile"] == target.dockerfile, target.name
        assert {k: unprint(v) for k, v in got.get("args", {}).items()} == as_resolved(plan, target.args), target.name
        # Compose has no git values: the labels they make are for the bake file (and CI) only.
        assert {k: unprint(v) for k, v in got.get("labels", {}).items()} == as_resolved(plan, target.labels)
        assert got.get("contexts", {}) == dict(target.contexts), target.name
        assert got["tags"] == [plan.value_of(target.image)], target.name


# The multi case's `gated` model reads its API key from this variable, and the vulkan case's services the host's
# render group from the other: Compose refuses the file without them.
KEY_ENV = {"TEAM_LLAMA_KEY": "test-key-123", "LLAMA_BAKE_RENDER_GID": "993"}


def compose_services(directory: Path, *files: str, env: dict[str, str] = KEY_ENV) -> dict[str, Any]:
    """The services as Compose's own loader reads (and merges) ``files``, with ``env`` set."""
    argv = ["docker", "compose", *(arg for name in files for arg in ("-f", name)), "config", "--format", "json"]
    loaded = subprocess.run(argv, cwd=directory, capture_output=True, text=True, check=False, env={**os.environ, **env})
    assert loaded.returncode == 0, loaded.stderr
    services: dict[str, Any] = json.loads(loaded.stdout)["services"]
    return services


@pytest.mark.parametrize("case", ["shipped", "multi", "vulkan"])
def test_docker_compose_itself_loads_the_compose_file(case: str, tmp_path: Path) -> None:
    """Compose's own loader (stricter than the JSON schema: it resolves `service:` contexts against the
    services it would run) reads the file, and sees the bases as services that are never started."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0:
        pytest.fail("the docker compose plugin is missing: run .ci/install-tools.sh")
    paths = catalog_paths(case, tmp_path)
    compose = paths.bake_dir / "compose.yaml"
    compose.write_text(compose_text(paths, compose, "llama-bake compose")[0], encoding="utf-8")
    services = compose_services(paths.bake_dir, "compose.yaml")
    plan = plan_catalog(paths)[1]
    assert set(services) == {t.name for t in plan.targets}
    for target in plan.targets:
        assert (services[target.name].get("scale") == 0) == (target.kind == "base"), target.name


def test_compose_publishes_on_loopback_unless_a_model_is_network_exposed_with_its_key(tmp_path: Path) -> None:
    """As Compose itself reads the file: a `local` model (the default) is published on 127.0.0.1 only; the
    `network` one on every interface, with its key as a Compose secret that llama-server reads from the
    secret's file (from a file or the environment, never written into the Compose file)."""
    paths = catalog_paths("multi", tmp_path)
    compose = paths.bake_dir / "compose.yaml"
    compose.write_text(compose_text(paths, compose, "llama-bake compose")[0], encoding="utf-8")
    services = compose_services(paths.bake_dir, "compose.yaml")
    plan = plan_catalog(paths)[1]
    for target in (t for t in plan.targets if t.kind == "model"):
        (port,) = services[target.name]["ports"]
        assert port.get("host_ip") == ("127.0.0.1" if target.access == "local" else None), target.name
        # Every model runs on a read-only root filesystem, writing only to its cache volume and /tmp.
        assert services[target.name]["read_only"] is True, target.name
        assert services[target.name]["tmpfs"] == ["/tmp"], target.name
    assert plan.target("vision").access == "network"
    # A key file: a Compose secret (a read-only bind mount, which a read-only container takes) for --api-key-file.
    assert services["vision"]["secrets"] == [{"source": "vision-api-key", "target": "/run/secrets/vision-api-key"}]
    assert services["vision"]["command"] == ["--api-key-file", "/run/secrets/vision-api-key"]
    # A variable: read by Compose when it loads the file, into llama-server's own LLAMA_API_KEY.
    assert services["gated"]["environment"]["LLAMA_API_KEY"] == KEY_ENV["TEAM_LLAMA_KEY"]
    assert "secrets" not in services["tiny-cpu"]
    assert "LLAMA_API_KEY" not in services["tiny-cpu"].get("environment", {})
    assert "test-key-123" not in compose.read_text()
    missing = subprocess.run(
        ["docker", "compose", "config"],
        cwd=paths.bake_dir,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "TEAM_LLAMA_KEY"},
    )
    assert missing.returncode != 0
    assert "TEAM_LLAMA_KEY must hold the API key of gated" in missing.stderr


GIT_SCHEME = ["{tag}", "sha-{git_sha}", "{git_branch}", "{git_version}", "{git_version}-cuda{cuda}"]


@pytest.mark.parametrize(
    ("git", "tags", "revision", "version"),
    [
        ({}, ["latest"], None, None),
        (
            {"GIT_SHA": "0123456789abcdef0123456789abcdef01234567", "GIT_BRANCH": "feature/Fast_path"},
            ["latest", "sha-0123456", "feature-Fast_path"],
            "0123456789abcdef0123456789abcdef01234567",
            None,
        ),
        (
            {"GIT_SHA": "89abcdef01234567", "GIT_BRANCH": "", "GIT_VERSION": "v1.2.3-rc.1"},
            ["latest", "sha-89abcde", "1.2.3-rc.1", "1.2.3-rc.1-cuda12.8.1"],
            "89abcdef01234567",
            "1.2.3-rc.1",
        ),
        (
            {"GIT_SHA": "89abcdef01234567", "GIT_VERSION": "nightly"},
            ["latest", "sha-89abcde"],
            "89abcdef01234567",
            None,
        ),
    ],
)
def test_git_tags_and_labels_follow_metadata_action(
    git: dict[str, str],
    tags: list[str],
    revision: str | None,
    version: str | None,
    write_catalog: WriteCatalog,
) -> None:
    """{git_sha} is the short sha, {git_branch} is sanitised, {git_version} is a semver tag without its v; a
    tag whose value is empty is left out, and models get the revision and version labels; the plan's own
    resolution (list, summary) agrees with buildx."""
    catalog = write_catalog(project={"registry": "r.example/acme", "tag_scheme": GIT_SCHEME})
    paths = Paths.from_options(catalog, None)
    plan = compile_catalog(paths).plan
    config = resolved(paths, ["model-a"], git)
    for name in ("model-a", "llama-cpp-cuda"):
        got = config["target"][name]
        assert got["tags"] == [f"r.example/acme/{name}:{tag}" for tag in tags]
        assert [t for t in (plan.value_of(i, git) for i in plan.target(name).tags) if t] == got["tags"]
    model, base = config["target"]["model-a"]["labels"], config["target"]["llama-cpp-cuda"]["labels"]
    assert model.get("org.opencontainers.image.revision") == revision
    assert model.get("org.opencontainers.image.version") == version
    assert "org.opencontainers.image.revision" not in base  # a per-commit base digest would rebuild every model


def test_source_date_epoch_from_the_catalog_reaches_every_target_and_the_environment_wins(
    write_catalog: WriteCatalog,
) -> None:
    catalog = write_catalog(project={"source_date_epoch": 1700000000})
    paths = Paths.from_options(catalog, None)
    config = resolved(paths, ["model-a"])
    assert {t["args"]["SOURCE_DATE_EPOCH"] for t in config["target"].values()} == {"1700000000"}
    config = resolved(paths, ["model-a"], {"SOURCE_DATE_EPOCH": "1600000000"})
    assert {t["args"]["SOURCE_DATE_EPOCH"] for t in config["target"].values()} == {"1600000000"}


def test_the_cpu_override_drops_every_gpu_reservation_in_compose_itself(tmp_path: Path) -> None:
    """`docker compose -f compose.yaml -f compose.cpu.yaml config`: Compose's own merge of the override `llama-bake
    compose` writes for a host without an NVIDIA GPU leaves no device reservation and offloads no layer."""
    paths = catalog_paths("shipped", tmp_path)
    written = CliRunner().invoke(main, ["compose", "-c", str(paths.catalog), "-b", str(paths.output)])
    assert written.exit_code == 0, written.output
    override = paths.bake_dir / "compose.cpu.yaml"
    assert override.read_text().startswith("# Generated by llama-bake: compose.yaml on a host without an NVIDIA GPU")
    services = compose_services(paths.bake_dir, "compose.yaml", "compose.cpu.yaml")
    plain = compose_services(paths.bake_dir, "compose.yaml")
    models = [name for name, service in plain.items() if "deploy" in service]
    assert models, "the shipped catalog's models reserve a GPU"
    for name in models:
        assert "deploy" not in services[name], name
        assert services[name]["environment"]["LLAMA_ARG_N_GPU_LAYERS"] == "0"
        assert services[name]["image"] == plain[name]["image"]
    again = CliRunner().invoke(main, ["compose", "--check", "-c", str(paths.catalog), "-b", str(paths.output)])
    assert again.exit_code == 0, again.output


def test_compose_gives_a_vulkan_service_the_render_nodes_and_group_and_the_cpu_override_drops_them(
    tmp_path: Path,
) -> None:
    """Compose's own loader: /dev/dri and the render group from LLAMA_BAKE_RENDER_GID, refused (saying how to find
    it) without it; merged with compose.cpu.yaml, neither remains and no layer is offloaded."""
    paths = catalog_paths("vulkan", tmp_path)
    written = CliRunner().invoke(main, ["compose", "-c", str(paths.catalog), "-b", str(paths.output)])
    assert written.exit_code == 0, written.output
    radeon = compose_services(paths.bake_dir, "compose.yaml")["tiny-radeon"]
    assert [(d["source"], d["target"]) for d in radeon["devices"]] == [("/dev/dri", "/dev/dri")]
    assert radeon["group_add"] == ["993"]
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_BAKE_RENDER_GID"}
    argv = ["docker", "compose", "-f", "compose.yaml", "config"]
    refused = subprocess.run(argv, cwd=paths.bake_dir, capture_output=True, text=True, check=False, env=env)
    assert refused.returncode != 0
    assert "set LLAMA_BAKE_RENDER_GID to the host's render group id (stat -c %g /dev/dri/renderD128)" in refused.stderr
    merged = compose_services(paths.bake_dir, "compose.yaml", "compose.cpu.yaml")
    for name in ("tiny-radeon", "tiny-arc"):
        assert not merged[name].get("devices"), name
        assert not merged[name].get("group_add"), name
        assert merged[name]["environment"]["LLAMA_ARG_N_GPU_LAYERS"] == "0"
    assert "deploy" not in merged["tiny-cuda"]
