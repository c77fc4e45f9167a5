"""The planner: CMake lines, tags, contexts, groups and shared Dockerfile shapes (pure, no I/O)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from llama_bake.catalog.bases import Base
from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.gpus import GPU_FAMILIES
from llama_bake.catalog.models import Model
from llama_bake.catalog.project import Project
from llama_bake.plan.environment import cmake_args, server_env
from llama_bake.plan.ir import Interp, Var
from llama_bake.plan.targets import make_plan
from llama_bake.project import Paths, plan_catalog
from tests.conftest import BASE, MODEL, SHA_A, SHA_B, WriteCatalog

ROOT = Path("/project")


def catalog(
    bases: list[dict[str, Any]] | None = None, models: list[dict[str, Any]] | None = None, **project: Any
) -> Catalog:
    return Catalog(
        project=Project.model_validate(project),
        bases=tuple(Base.model_validate(b) for b in (bases or [{"name": "base", **BASE}])),
        models=tuple(Model.model_validate(m) for m in (models or [{"name": "m", **MODEL}])),
    )


@pytest.mark.parametrize("family", sorted(GPU_FAMILIES))
def test_cmake_line_for_each_gpu_family(family: str) -> None:
    info = GPU_FAMILIES[family]
    cuda = "12.9.1" if info.max_cuda is None else "12.8.1"
    base = Base.model_validate({"name": "b", **BASE, "cuda": cuda, "gpu_families": [family]})
    assert cmake_args(base) == (
        f"-DGGML_NATIVE=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES={info.cuda_arch} "
        "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined -DGGML_BACKEND_DL=ON "
        "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
    )


def test_cpu_cmake_line_has_no_cuda_and_user_options_override_defaults() -> None:
    base = Base.model_validate(
        {"name": "b", **BASE, "backend": "cpu", "gpu_families": [], "cmake_options": {"GGML_CPU_ALL_VARIANTS": "OFF"}}
    )
    line = cmake_args(base)
    assert "CUDA" not in line
    assert line.endswith("-DGGML_CPU_ALL_VARIANTS=OFF"), "after the platform's CPU options, so it wins"


@pytest.mark.parametrize(
    ("families", "platforms", "built"),
    [
        (["ada", "blackwell-consumer"], None, ("linux/amd64",)),
        (["gb10"], None, ("linux/arm64",)),
        (["hopper", "blackwell-datacenter"], None, ("linux/amd64",)),
        (["hopper", "blackwell-datacenter"], ["linux/arm64", "linux/amd64"], ("linux/amd64", "linux/arm64")),
        (["hopper", "gb10"], None, ("linux/arm64",)),
    ],
)
def test_platforms_follow_the_gpu_families_and_each_platform_gets_its_cpu_options(
    families: list[str], platforms: list[str] | None, built: tuple[str, ...]
) -> None:
    settings = {"gpu_families": families, "cuda": "12.9.1"} | ({"platforms": platforms} if platforms else {})
    plan = make_plan(catalog(bases=[{"name": "base", **BASE, **settings}]), ROOT, ROOT)
    base, model = plan.target("base"), plan.target("m")
    assert base.platforms == model.platforms == built
    args = dict(base.args)
    assert {k for k in args if k.startswith("CMAKE_ARGS_")} == {f"CMAKE_ARGS_{p[6:].upper()}" for p in built}
    if "linux/arm64" in built:
        assert "GGML_CPU_ALL_VARIANTS=OFF" in str(args["CMAKE_ARGS_ARM64"]), "no x86 variants on arm64"


@pytest.mark.parametrize(
    ("families", "platforms", "said"),
    [
        (["ada", "gb10"], None, "`ada` (RTX 40, L4, L40S, RTX 6000 Ada) exists on linux/amd64 only"),
        (["blackwell-consumer"], ["linux/arm64"], "exists on linux/amd64 only, but `platforms` asks for linux/arm64"),
        (["gb10"], ["linux/amd64"], "`gb10` (GB10 (DGX Spark)) exists on linux/arm64 only"),
    ],
)
def test_a_family_on_a_platform_it_does_not_exist_on_is_an_error_with_the_fix(
    families: list[str], platforms: list[str] | None, said: str
) -> None:
    from pydantic import ValidationError

    settings = {"gpu_families": families, "cuda": "12.9.1"} | ({"platforms": platforms} if platforms else {})
    with pytest.raises(ValidationError, match=re.escape(said)):
        Base.model_validate({"name": "b", **BASE, **settings})


def test_models_link_to_their_base_through_a_target_context() -> None:
    plan = make_plan(catalog(), ROOT, ROOT)
    assert plan.target("m").contexts == (("base", "target:base"),)
    assert plan.target("base").contexts == (("llama-src", "https://github.com/ggml-org/llama.cpp.git#b6500"),)


def test_groups_default_bases_models_and_one_per_base() -> None:
    plan = make_plan(
        catalog(
            bases=[{"name": "one", **BASE}, {"name": "two", **BASE}],
            models=[{"name": "a", "base": "one", **MODEL}, {"name": "b", "base": "two", **MODEL}],
        ),
        ROOT,
        ROOT,
    )
    groups = {g.name: g.targets for g in plan.groups}
    assert groups == {
        "default": ("a", "b"),
        "models": ("a", "b"),
        "bases": ("one", "two"),
        "one-all": ("one", "a"),
        "two-all": ("two", "b"),
    }


def test_tag_scheme_expands_placeholders_and_variables() -> None:
    plan = make_plan(catalog(tag_scheme=["{tag}", "{ref}-cuda{cuda}"]), ROOT, ROOT)
    assert plan.target("m").tags == (
        Interp((Var("REGISTRY"), "/m:", Var("TAG"))),
        Interp((Var("REGISTRY"), "/m:b6500-cuda12.8.1")),
    )


def test_models_of_the_same_shape_share_one_dockerfile() -> None:
    models = [
        {"name": "a", **MODEL},
        {"name": "b", **MODEL, "server": {"port": 9000}},
        {"name": "c", **MODEL, "mmproj": {**MODEL["weights"], "sha256": SHA_B}},
    ]
    plan = make_plan(catalog(models=models), ROOT, ROOT)
    assert plan.target("a").shape == plan.target("b").shape
    assert plan.target("a").shape != plan.target("c").shape
    assert len(plan.shapes) == 3  # base, plain model, model with mmproj


def test_server_settings_become_llama_arg_environment() -> None:
    model = Model.model_validate(
        {
            "name": "m",
            **MODEL,
            "server": {
                "port": 9000,
                "ctx_size": 4096,
                "n_gpu_layers": 99,
                "flash_attn": "on",
                "jinja": False,
                "extra_args": ["--temp", "0.7", "--alias", "my model"],
            },
        }
    )
    env = server_env(model)
    assert env["LLAMA_ARG_PORT"] == "9000"
    assert env["LLAMA_ARG_CTX_SIZE"] == "4096"
    assert env["LLAMA_ARG_N_GPU_LAYERS"] == "99"
    assert env["LLAMA_ARG_FLASH_ATTN"] == "on"
    assert env["LLAMA_ARG_JINJA"] == "false"
    assert env["LLAMA_ARG_MODEL"] == "/models/model-Q4_K_M.gguf"
    assert env["LLAMA_BAKE_EXTRA_ARGS"] == "--temp\n0.7\n--alias\nmy model"
    assert list(env) == sorted(env)


def test_fetch_delivery_sets_no_model_path_in_the_image() -> None:
    model = Model.model_validate({"name": "m", **MODEL, "delivery": "fetch"})
    env = server_env(model)
    assert "LLAMA_ARG_MODEL" not in env
    assert env["LLAMA_BAKE_WEIGHTS_URL"].startswith("https://huggingface.co/owner/repo-GGUF/resolve/")


def test_gated_weights_get_the_token_as_a_secret_never_an_arg() -> None:
    gated = {**MODEL["weights"], "gated": True}
    plan = make_plan(catalog(models=[{"name": "m", "weights": gated}]), ROOT, ROOT)
    target = plan.target("m")
    assert target.secrets == ("id=hf_token,env=HF_TOKEN",)
    assert not any("TOKEN" in key for key, _ in target.args)


def test_image_overrides_become_named_contexts_of_the_base() -> None:
    overrides = {"nvidia/cuda:12.8.1-devel-ubuntu24.04": "docker-image://mirror.local/cuda:12.8.1-devel"}
    plan = make_plan(catalog(image_overrides=overrides), ROOT, ROOT)
    assert ("nvidia/cuda:12.8.1-devel-ubuntu24.04", "docker-image://mirror.local/cuda:12.8.1-devel") in plan.target(
        "base"
    ).contexts


def test_a_slim_cuda_runtime_starts_from_the_os_image_with_nvidias_environment() -> None:
    overrides = {"ubuntu:24.04": "oci-layout:///mirror/ubuntu:24.04"}
    plan = make_plan(catalog(bases=[{"name": "base", **BASE, "cuda": "13.0.2"}], image_overrides=overrides), ROOT, ROOT)
    target = plan.target("base")
    args = dict(target.args)
    assert args["BUILD_IMAGE"] == "nvidia/cuda:13.0.2-devel-ubuntu24.04"
    assert args["RUNTIME_IMAGE"] == "ubuntu:24.04"
    assert ("ubuntu:24.04", "oci-layout:///mirror/ubuntu:24.04") in target.contexts
    assert target.shape.cuda_runtime == "slim"
    assert {k: v for k, v in args.items() if k.startswith(("ENV_NVIDIA", "ENV_CUDA"))} == {
        "ENV_CUDA_VERSION": "13.0.2",
        "ENV_NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "ENV_NVIDIA_REQUIRE_CUDA": "cuda>=13.0",
        "ENV_NVIDIA_VISIBLE_DEVICES": "all",
    }


def test_the_full_cuda_runtime_is_nvidias_image_and_keeps_its_environment() -> None:
    plan = make_plan(catalog(bases=[{"name": "base", **BASE, "cuda_runtime": "full"}]), ROOT, ROOT)
    target = plan.target("base")
    args = dict(target.args)
    assert args["RUNTIME_IMAGE"] == "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
    assert target.shape.cuda_runtime == "full"
    # NVIDIA's image sets these itself; a base's runtime_env may still override them.
    assert not [k for k in args if k.startswith(("ENV_NVIDIA", "ENV_CUDA"))]


def test_runtime_env_wins_over_the_slim_runtimes_nvidia_environment() -> None:
    base = {"name": "base", **BASE, "runtime_env": {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video"}}
    args = dict(make_plan(catalog(bases=[base]), ROOT, ROOT).target("base").args)
    assert args["ENV_NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"


def test_local_llama_cpp_source_is_relative_to_the_bake_file() -> None:
    base = {"name": "base", **BASE, "llama_cpp": {"path": "vendor/llama.cpp", "ref": "b6500"}}
    plan = make_plan(catalog(bases=[base]), ROOT, ROOT / "build")
    assert dict(plan.target("base").contexts)["llama-src"] == "../vendor/llama.cpp"


def test_an_archive_source_is_its_directory_plus_its_name_and_subdir() -> None:
    source = {"path": "vendor/llama_cpp_python-0.3.36.tar.gz", "subdir": "llama_cpp_python-0.3.36/vendor/llama.cpp"}
    plan = make_plan(catalog(bases=[{"name": "base", **BASE, "llama_cpp": source}]), ROOT, ROOT / "build")
    target = plan.target("base")
    assert ("llama-src", "../vendor") in target.contexts
    args = dict(target.args)
    assert args["LLAMA_SRC_ARCHIVE"] == "llama_cpp_python-0.3.36.tar.gz"
    assert args["LLAMA_SRC_SUBDIR"] == "llama_cpp_python-0.3.36/vendor/llama.cpp"
    assert target.shape.source == "archive"
    tree = make_plan(catalog(bases=[{"name": "base", **BASE, "llama_cpp": {"path": "vendor/llama.cpp"}}]), ROOT, ROOT)
    assert tree.target("base").shape.source == "tree"
    assert "LLAMA_SRC_ARCHIVE" not in dict(tree.target("base").args)


def test_local_weights_are_a_named_context_and_carry_no_url() -> None:
    local = {"path": "weights/tiny.gguf", "sha256": SHA_B}
    plan = make_plan(catalog(models=[{"name": "m", "weights": local, "mmproj": MODEL["weights"]}]), ROOT, ROOT)
    target = plan.target("m")
    assert dict(target.contexts) == {"base": "target:base", "weights-file": "weights"}
    args = dict(target.args)
    assert args["WEIGHTS_SOURCE"] == "tiny.gguf"
    assert args["ENV_LLAMA_BAKE_WEIGHTS_SHA256"] == SHA_B
    assert "ENV_LLAMA_BAKE_WEIGHTS_URL" not in args
    assert target.shape.sources == ("local", "remote")
    assert dict(target.labels)["io.llama-bake.model.weights"] == "file:tiny.gguf"


def test_a_split_model_gets_each_part_as_its_own_download_and_loads_the_first() -> None:
    parts = [{"file": f"q/m-{n:05d}-of-00003.gguf", "sha256": SHA_A, "size": n} for n in (1, 2, 3)]
    weights = {"hf": "o/r", "revision": "a" * 40, "parts": parts}
    plan = make_plan(catalog(models=[{"name": "m", "weights": weights, "mmproj": MODEL["weights"]}]), ROOT, ROOT)
    target = plan.target("m")
    args = dict(target.args)
    assert args["ENV_LLAMA_BAKE_WEIGHTS_PARTS"] == "3"
    assert (
        args["ENV_LLAMA_BAKE_WEIGHTS_3_URL"] == f"https://huggingface.co/o/r/resolve/{'a' * 40}/q/m-00003-of-00003.gguf"
    )
    assert args["ENV_LLAMA_BAKE_WEIGHTS_2_FILE"] == "m-00002-of-00003.gguf"
    assert args["ENV_LLAMA_ARG_MODEL"] == "/models/m-00001-of-00003.gguf"
    assert [i[0] for i in target.shape.items] == ["WEIGHTS", "WEIGHTS_2", "WEIGHTS_3", "MMPROJ"]
    assert {i[1] for i in target.shape.items[:3]} == {"/models/"}, "the parts lie side by side"


def test_a_local_split_model_is_one_context_per_part() -> None:
    parts = [{"path": f"w/m-{n:05d}-of-00002.gguf", "sha256": SHA_A} for n in (1, 2)]
    plan = make_plan(catalog(models=[{"name": "m", "weights": {"parts": parts}}]), ROOT, ROOT)
    target = plan.target("m")
    assert dict(target.contexts) == {"base": "target:base", "weights-file": "w", "weights-2-file": "w"}
    assert dict(target.args)["WEIGHTS_2_SOURCE"] == "m-00002-of-00002.gguf"


def test_one_file_over_the_layer_limit_is_re_split_by_a_tool_pinned_apart_from_the_base() -> None:
    weights = {"url": "https://h/big.gguf", "sha256": SHA_A, "size": 16_500_000_000}
    overrides = {"ubuntu:24.04": "oci-layout:///mirror/ubuntu"}
    plan = make_plan(catalog(models=[{"name": "m", "weights": weights}], image_overrides=overrides), ROOT, ROOT)
    target = plan.target("m")
    args = dict(target.args)
    assert args["SPLIT_MAX_MB"] == "8488", "room under 9 GB for the first part's metadata"
    assert args["MAX_LAYER_SIZE"] == "9000000000"
    assert args["ENV_LLAMA_ARG_MODEL"] == "/models/big-00001-of-*.gguf"
    assert target.shape.resplit_layers == 4, "at most twice the two parts a perfect packing needs"
    assert target.weight_layers == 2
    contexts = dict(target.contexts)
    assert contexts["gguf-split-src"] == "https://github.com/ggml-org/llama.cpp.git#b6500", "not the base's llama.cpp"
    assert contexts["ubuntu:24.04"] == "oci-layout:///mirror/ubuntu"


@pytest.mark.parametrize(
    "model",
    [
        {"weights": {"url": "https://h/m.gguf", "sha256": SHA_A, "size": 9_000_000_000}},
        {"weights": {"url": "https://h/m.gguf", "sha256": SHA_A}},
        {"weights": {"url": "https://h/m.gguf", "sha256": SHA_A, "size": 10**11}, "delivery": "fetch"},
        {"weights": {**MODEL["weights"], "size": 10**11, "gated": True}},
    ],
    ids=["at-the-limit", "size-unknown", "fetched", "gated"],
)
def test_weights_that_are_not_re_split(model: dict[str, Any]) -> None:
    target = make_plan(catalog(models=[{"name": "m", **model}]), ROOT, ROOT).target("m")
    assert target.shape.resplit_layers == 0
    assert "gguf-split-src" not in dict(target.contexts)


def test_hf_endpoint_moves_downloads_to_a_mirror_and_only_gated_files_get_the_token() -> None:
    gated = {**MODEL["weights"], "gated": True}
    mmproj = {"url": "https://cdn.example/p.gguf", "sha256": SHA_B}
    models = [{"name": "m", "weights": gated, "mmproj": mmproj}]
    plan = make_plan(catalog(models=models, hf_endpoint="https://hf-mirror.example"), ROOT, ROOT)
    target = plan.target("m")
    args = dict(target.args)
    assert str(args["ENV_LLAMA_BAKE_WEIGHTS_URL"]).startswith("https://hf-mirror.example/owner/repo-GGUF/resolve/")
    assert args["ENV_LLAMA_BAKE_WEIGHTS_GATED"] == "hf"
    assert "ENV_LLAMA_BAKE_MMPROJ_GATED" not in args
    assert target.shape.sources == ("gated", "remote")


def test_windows_paths_resolve_with_windows_path_logic() -> None:
    """The plan's path logic on Windows-style inputs: a user name with a space, backslashes (the catalog turns
    them into /), another drive (bake takes it absolute)."""
    import ntpath
    from pathlib import PureWindowsPath

    from llama_bake.plan.targets import _file_context, _relative

    project = PureWindowsPath(r"C:\Users\Jane Doe\llm")
    assert _relative(project, project, "models/x.gguf", ntpath) == "models/x.gguf"
    assert _relative(project, project / "build", "models/x.gguf", ntpath) == "../models/x.gguf"
    assert _relative(project, project, "D:/weights/big model.gguf", ntpath) == "D:/weights/big model.gguf"
    assert _file_context(project, project, "C:/Users/Jane Doe/llm/w/m.gguf", ntpath) == ("w", "m.gguf")


def test_a_catalog_path_written_the_windows_way_is_read_as_its_parts(tmp_path: Path) -> None:
    from llama_bake.errors import CatalogError

    weights = tmp_path / "my models" / "m.gguf"
    weights.parent.mkdir()
    model = {"name": "m", "weights": {"path": r"my models\m.gguf", "sha256": SHA_A}}
    plan = make_plan(catalog(models=[model]), tmp_path, tmp_path)
    assert dict(plan.target("m").contexts)["weights-file"] == "my models"
    drive = {"name": "m", "weights": {"path": r"C:\models\m.gguf", "sha256": SHA_A}}
    with pytest.raises(CatalogError, match="is a Windows path"):
        make_plan(catalog(models=[drive]), tmp_path, tmp_path)


def test_a_model_images_license_label_is_the_weights_not_the_projects(write_catalog: WriteCatalog) -> None:
    project = {"labels": {"org.opencontainers.image.licenses": "MIT", "org.opencontainers.image.vendor": "team"}}
    catalog = write_catalog(models={"known": {**MODEL, "license": "gemma"}, "unknown": MODEL}, project=project)
    plan = plan_catalog(Paths.from_options(catalog, None))[1]
    labels = {t.name: dict(t.labels) for t in plan.targets}
    assert labels["known"]["org.opencontainers.image.licenses"] == "gemma"
    assert labels["unknown"]["org.opencontainers.image.licenses"] == "NOASSERTION", "not the base's, which it inherits"
    assert labels["unknown"]["org.opencontainers.image.vendor"] == "team"
    assert labels["llama-cpp-cuda"]["org.opencontainers.image.licenses"] == "MIT", "the base is llama.cpp's build"
