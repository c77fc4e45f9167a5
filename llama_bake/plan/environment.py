"""What an image is told: a base's CMake line, and a model image's environment (server defaults as LLAMA_ARG_*,
where its weights come from) and the label naming its weights.
"""

from __future__ import annotations

from llama_bake.catalog.bases import Base
from llama_bake.catalog.constants import DEFAULT_MAX_LAYER_SIZE, HF_ENDPOINT
from llama_bake.catalog.layers import resplit
from llama_bake.catalog.models import FileWeights, HfWeights, Model, UrlWeights, Weights
from llama_bake.plan.ir import DEFAULT_LLAMA_CACHE, MODELS_DIR, part_prefix


def cmake_args(base: Base) -> str:
    """The -D options passed to llama.cpp's CMake, generated ones first, user options sorted."""
    options: dict[str, str] = {"GGML_NATIVE": "OFF"}
    backend = base.engine
    if backend.cmake_option:
        options[backend.cmake_option] = "ON"
    if backend.cuda:
        options["CMAKE_CUDA_ARCHITECTURES"] = base.cuda_architectures
        # libcuda.so comes from the host driver at run time; the devel image only has its stub.
        options["CMAKE_EXE_LINKER_FLAGS"] = "-Wl,--allow-shlib-undefined"
    options.update({"GGML_BACKEND_DL": "ON", "LLAMA_BUILD_TESTS": "OFF", "LLAMA_BUILD_EXAMPLES": "OFF"})
    options.update(dict(sorted(base.cmake_options.items())))
    return " ".join(f"-D{k}={v}" for k, v in options.items())


def base_env(base: Base) -> dict[str, str]:
    """A base image's environment, sorted: llama.cpp's download cache and what the backend sets (a vulkan image
    says it is one, which its entrypoint reads); on a slim CUDA runtime what NVIDIA's runtime image tells the NVIDIA
    container toolkit; then the base's runtime_env, which wins."""
    env = {"LLAMA_CACHE": DEFAULT_LLAMA_CACHE, **base.engine.image_env}
    if base.engine.cuda and base.cuda_runtime == "slim":
        major, minor = base.cuda.split(".")[:2]
        env |= {
            "CUDA_VERSION": base.cuda,
            "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
            # NVIDIA's image adds driver ranges per GPU brand that its forward-compatibility libcuda (the
            # cuda-compat package) makes work with an older driver; the slim image does not carry it, so the
            # toolkit refuses a driver too old for this CUDA before anything starts.
            "NVIDIA_REQUIRE_CUDA": f"cuda>={major}.{minor}",
            "NVIDIA_VISIBLE_DEVICES": "all",
        }
    env |= base.runtime_env
    return dict(sorted(env.items()))


# The CPU code of each architecture, put before the options above (a user's cmake_options win): every x86
# variant, loaded at start by the CPU's features; on arm64 one build for ARMv8.2 with dot product and fp16,
# which every Grace and GB10 core has. x86 variants do not exist there.
CPU_ARGS = {
    "linux/amd64": "-DGGML_CPU_ALL_VARIANTS=ON",
    "linux/arm64": "-DGGML_CPU_ALL_VARIANTS=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16",
}


def weights_env(prefix: str, weights: Weights, hf_endpoint: str) -> dict[str, str]:
    """Each file's checksum, name in the image and URL (``PREFIX_2_...`` for a split model's second part)."""
    env: dict[str, str] = {}
    files = weights.files
    if len(files) > 1:
        env[f"LLAMA_BAKE_{prefix}_PARTS"] = str(len(files))
    for number, item in enumerate(files, start=1):
        key = f"LLAMA_BAKE_{part_prefix(prefix, number)}"
        env[f"{key}_SHA256"] = item.sha256
        env[f"{key}_FILE"] = item.filename
        if isinstance(weights, HfWeights):
            env[f"{key}_URL"] = weights.url(hf_endpoint, item.source)
        elif isinstance(weights, UrlWeights):
            env[f"{key}_URL"] = item.source
    if isinstance(weights, HfWeights) and weights.gated:
        # Only these downloads are sent the Hugging Face token.
        env[f"LLAMA_BAKE_{prefix}_GATED"] = "hf"
    return env


def weights_label(weights: Weights) -> str:
    first = weights.files[0]
    if isinstance(weights, HfWeights):
        return f"hf://{weights.hf}/{first.source}@{weights.revision}"
    if isinstance(weights, FileWeights):
        return f"file:{first.source.rstrip('/').rsplit('/', 1)[-1]}"
    return first.source


def server_env(
    model: Model, hf_endpoint: str = HF_ENDPOINT, max_layer_size: int = DEFAULT_MAX_LAYER_SIZE
) -> dict[str, str]:
    """Every environment variable of a model image, sorted: server defaults as LLAMA_ARG_*."""
    server = model.server
    env: dict[str, str] = {
        "LLAMA_ARG_HOST": server.host,
        "LLAMA_ARG_PORT": str(server.port),
        "LLAMA_ARG_FLASH_ATTN": server.flash_attn,
        "LLAMA_ARG_JINJA": "true" if server.jinja else "false",
        "LLAMA_BAKE_DELIVERY": model.delivery,
        "LLAMA_BAKE_MODEL": model.name,
        **weights_env("WEIGHTS", model.weights, hf_endpoint),
    }
    if server.ctx_size is not None:
        env["LLAMA_ARG_CTX_SIZE"] = str(server.ctx_size)
    if server.n_gpu_layers is not None:
        env["LLAMA_ARG_N_GPU_LAYERS"] = str(server.n_gpu_layers)
    if model.delivery == "baked":
        env["LLAMA_ARG_MODEL"] = f"{MODELS_DIR}/{model.weights.files[0].filename}"
        if resplit(model, max_layer_size) is not None:
            # Its parts are named by how many llama-gguf-split made; the entrypoint picks the first.
            stem = model.weights.files[0].filename.removesuffix(".gguf")
            env["LLAMA_ARG_MODEL"] = f"{MODELS_DIR}/{stem}-00001-of-*.gguf"
    if model.mmproj is not None:
        env.update(weights_env("MMPROJ", model.mmproj, hf_endpoint))
        if model.delivery == "baked":
            env["LLAMA_ARG_MMPROJ"] = f"{MODELS_DIR}/mmproj/{model.mmproj.files[0].filename}"
    if server.extra_args:
        env["LLAMA_BAKE_EXTRA_ARGS"] = "\n".join(server.extra_args)
    env.update(server.env)
    return dict(sorted(env.items()))
