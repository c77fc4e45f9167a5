"""The GPU families llama-bake builds for: NVIDIA's (architectures, cards, the first CUDA of each, platforms) and
the AMD and Intel families a Vulkan base runs on (cards, vendor, Kubernetes resource); the cards people name for each;
CUDA versions, and llama.cpp's CMake options that the catalog manages or that no longer exist. Pure data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llama_bake.errors import did_you_mean

# --- GPU families -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFamily:
    name: str
    compute_capability: int
    cuda_arch: str  # what goes into CMAKE_CUDA_ARCHITECTURES
    min_cuda: tuple[int, int]
    max_cuda: tuple[int, int] | None  # last toolkit line that can still compile for it
    cards: str
    # The CPU architectures its machines come in: a GB10 (DGX Spark) is arm64 only; Hopper and datacenter
    # Blackwell exist as x86 servers and as Grace (arm64) superchips, GH200 and GB200.
    platforms: tuple[str, ...] = ("linux/amd64",)


# "-real" compiles device code for exactly the cards a team owns (no PTX JIT at first start).
# Blackwell consumer parts use the architecture-specific "a" variant: its FP4 tensor-core instructions
# (gpt-oss's MXFP4) need it, and ggml rewrites a plain 12X to 12Xa anyway, so the label stays truthful.
PLATFORMS = ("linux/amd64", "linux/arm64")
BOTH = PLATFORMS

GPU_FAMILIES: dict[str, GpuFamily] = {
    f.name: f
    for f in (
        GpuFamily("volta", 70, "70-real", (9, 0), (12, 9), "V100, Titan V"),
        GpuFamily("turing", 75, "75-real", (10, 0), None, "RTX 20, T4, Quadro RTX"),
        GpuFamily("ampere-datacenter", 80, "80-real", (11, 0), None, "A100, A30"),
        GpuFamily("ampere", 86, "86-real", (11, 1), None, "RTX 30, A10, A40, RTX A6000"),
        GpuFamily("ada", 89, "89-real", (11, 8), None, "RTX 40, L4, L40S, RTX 6000 Ada"),
        GpuFamily("hopper", 90, "90-real", (11, 8), None, "H100, H200, GH200", BOTH),
        GpuFamily("blackwell-datacenter", 100, "100-real", (12, 8), None, "B200, GB200", BOTH),
        GpuFamily("blackwell-consumer", 120, "120a-real", (12, 8), None, "RTX 50, RTX PRO 6000 Blackwell"),
        GpuFamily("gb10", 121, "121a-real", (12, 9), None, "GB10 (DGX Spark)", ("linux/arm64",)),
    )
}

# What people write for a card (lower case, without spaces, '-' or '_') -> its family.
_CARD_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(geforce)?rtx20\d\d(ti|super|tisuper)?|t4|quadrortx\d+|titanrtx", "turing"),
    (r"(geforce)?rtx30\d\d(ti)?|a10g?|a40|rtxa\d+|a6000", "ampere"),
    (r"a100|a30|a800", "ampere-datacenter"),
    (r"(geforce)?rtx40\d\d(ti|super|tisuper)?|l4|l40s?|rtx6000ada|rtx\d+ada", "ada"),
    (r"gh200|h100|h200|h800|h20", "hopper"),
    (r"gb200|b200|b100|gb300|b300", "blackwell-datacenter"),
    (r"(geforce)?rtx50\d\d(ti)?|rtxpro\d+(blackwell)?", "blackwell-consumer"),
    (r"dgxspark|spark", "gb10"),
    (r"v100|titanv", "volta"),
)


# Vulkan families: llama.cpp's Vulkan shaders are SPIR-V, compiled once for every card, so a family changes no
# compile; it says which cards a base is for (labels, `list`, `graph`) and which device plugin's resource a pod asks
# for. The resource is the vendor's device plugin's: AMD's `amd.com/gpu`; Intel's `gpu.intel.com/i915`, or `xe` for
# the cards whose kernel driver is xe (Battlemage, Lunar Lake).
@dataclass(frozen=True)
class VulkanFamily:
    name: str
    vendor: str  # amd or intel
    cards: str
    kube_resource: str
    platforms: tuple[str, ...] = BOTH  # SPIR-V runs on either: a family fixes no platform


# PCI vendor ids of the GPUs' makers, as the kernel shows them (/sys/class/drm/renderD*/device/vendor).
PCI_VENDORS = {0x1002: "AMD", 0x8086: "Intel", 0x10DE: "NVIDIA"}
# An example card per vendor, for a message that asks the user to name theirs.
VENDOR_EXAMPLES = {"NVIDIA": "RTX 4090", "AMD": "Radeon RX 7900 XTX", "Intel": "Arc A770"}

AMD_GPU = "amd.com/gpu"
INTEL_I915 = "gpu.intel.com/i915"
INTEL_XE = "gpu.intel.com/xe"
# Each device plugin's resource -> a short name for it (`init` names a Vulkan base per device plugin with it when
# the cards it is given need more than one: a pod asks for one plugin's GPU).
DEVICE_PLUGIN_NAMES = {AMD_GPU: "amd", INTEL_I915: "intel-i915", INTEL_XE: "intel-xe"}
VULKAN_FAMILIES: dict[str, VulkanFamily] = {
    f.name: f
    for f in (
        VulkanFamily("rdna1", "amd", "Radeon RX 5500, 5600, 5700 (XT), PRO W5700", AMD_GPU),
        VulkanFamily("rdna2", "amd", "Radeon RX 6400-6950 XT, PRO W6800, Radeon 680M/660M, Steam Deck", AMD_GPU),
        VulkanFamily("rdna3", "amd", "Radeon RX 7600-7900 XTX, PRO W7800/W7900, Radeon 780M/760M", AMD_GPU),
        VulkanFamily(
            "rdna3.5",
            "amd",
            "Ryzen AI Max+ 395 / Max 390 / 385 (Strix Halo: Radeon 8060S/8050S), Radeon 890M/880M",
            AMD_GPU,
        ),
        VulkanFamily("rdna4", "amd", "Radeon RX 9060 XT, 9070 (XT), Radeon AI PRO R9700", AMD_GPU),
        VulkanFamily("intel-arc-alchemist", "intel", "Arc A310-A770, Arc Pro A40-A60", INTEL_I915),
        VulkanFamily("intel-arc-battlemage", "intel", "Arc B570, B580, Arc Pro B50/B60", INTEL_XE),
        VulkanFamily("intel-xe-igpu", "intel", "Iris Xe, Arc graphics of Core Ultra (Meteor/Arrow Lake)", INTEL_I915),
    )
}

# Every family a base may name -> the backend that runs it.
FAMILY_BACKEND: dict[str, str] = {**dict.fromkeys(GPU_FAMILIES, "cuda"), **dict.fromkeys(VULKAN_FAMILIES, "vulkan")}
FAMILY_NAMES = tuple(FAMILY_BACKEND)

_VULKAN_CARD_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(radeon|radeonrx|rx)5[5-7]\d\d(xt|m)?|radeon(pro)?w5\d\d\d", "rdna1"),
    (r"(radeon|radeonrx|rx)6[4-9]\d\d(xt|m|s)?|radeon(pro)?w6\d\d\d|radeon6[68]0m|steamdeck", "rdna2"),
    (r"(radeon|radeonrx|rx)7[6-9]\d\d(xtx|xt|gre|m|s)?|radeon(pro)?w7\d\d\d|radeon7[4-8]0m", "rdna3"),
    (
        r"ryzenaimax\+?\d{3}|radeon80[4-6]0s|radeon8[89]0m|strixhalo|strixpoint|ryzenai9(hx)?3\d\d",
        "rdna3.5",
    ),
    (r"(radeon|radeonrx|rx)90[67]0(xt|gre)?|radeon(ai)?pror9700", "rdna4"),
    (r"(intel)?arc(pro)?a\d{2,3}m?|a(310|380|580|750|770)", "intel-arc-alchemist"),
    (r"(intel)?arc(pro)?b\d{2,3}|b(570|580)", "intel-arc-battlemage"),
    (r"(intel)?(irisxe|arc1[34]0[vt]|arcgraphics|coreultra\w*)", "intel-xe-igpu"),
)


def family_cards(name: str) -> str:
    """The cards of any family, NVIDIA's or a Vulkan one."""
    family = GPU_FAMILIES.get(name) or VULKAN_FAMILIES[name]
    return family.cards


def _capability(word: str) -> int | None:
    """``8.9``, ``89``, ``sm_89``, ``sm_120a``, ``compute_86`` -> the compute capability as an int."""
    match = re.fullmatch(r"(?:sm|compute|cc)?(\d{1,2})\.?(\d)a?", re.sub(r"[\s_-]", "", word.lower()))
    return int(match.group(1) + match.group(2)) if match else None


def family_of(word: str) -> str | None:
    """The GPU family a user's word names: the family itself, a card (``RTX 4090``, ``L40S``, ``Radeon RX 7900
    XTX``, ``Ryzen AI Max+ 395``, ``Arc A770``) or a compute capability (``8.9``, ``sm_120``); None when it names
    none."""
    if word in FAMILY_BACKEND:
        return word
    capability = _capability(word)
    if capability is not None:
        return next((f.name for f in GPU_FAMILIES.values() if f.compute_capability == capability), None)
    compact = re.sub(r"[\s_-]", "", word.lower())
    for vendor in ("nvidia", "amd", "intel"):
        compact = compact.removeprefix(vendor)
    for pattern, family in (*_CARD_PATTERNS, *_VULKAN_CARD_PATTERNS):
        if re.fullmatch(pattern, compact):
            return family
    return None


def card_of(word: str) -> tuple[str, str] | None:
    """(backend, family) of a card, a family or a compute capability: ``RTX 4090`` -> (cuda, ada), ``Radeon RX
    7900 XTX`` -> (vulkan, rdna3); None when the word names none."""
    family = family_of(word)
    return (FAMILY_BACKEND[family], family) if family is not None else None


def family_hint(word: str) -> str:
    """What a GPU family the user wrote as a card name or a compute capability stands for."""
    family = family_of(word)
    capability = _capability(word)
    if capability is not None and family is None:
        return f"no family llama-bake knows has compute capability {capability}"
    if family is not None:
        named = f"compute capability {capability} is" if capability is not None else f"{word} is in"
        return f"{named} the family `{family}` ({family_cards(family)}): write `{family}`"
    hint = did_you_mean(word, FAMILY_NAMES)
    return hint or "not a family llama-bake knows"


def known_families() -> str:
    """Every family with its cards, for an error that lists what can be written: NVIDIA's (cuda), then Vulkan's."""
    return "; ".join(f"{name} ({family_cards(name)})" for name in FAMILY_NAMES)


# CMake switches that look plausible but do not exist (any more) in llama.cpp, with what to do instead.
OBSOLETE_CMAKE_OPTIONS: dict[str, str] = {
    "GGML_FLASH_ATTN": (
        "never existed: flash attention is a run-time choice; set the model's `server.flash_attn` "
        "(on/off/auto). GGML_CUDA_FA (default ON) compiles the kernels"
    ),
    "GGML_CUDA_F16": "was removed from llama.cpp in 2025; drop it (FP16 paths are chosen at run time)",
    "LLAMA_CUDA_F16": "was removed from llama.cpp; drop it",
    "LLAMA_CURL": "is ignored by current llama.cpp (downloads no longer use libcurl); drop it",
    "LLAMA_CUBLAS": "is a hard error in current llama.cpp; use `backend: cuda` (GGML_CUDA=ON)",
    "LLAMA_VULKAN": "was renamed GGML_VULKAN; use `backend: vulkan`",
    "LLAMA_CUDA": "was renamed GGML_CUDA; use `backend: cuda`",
    "LLAMA_NATIVE": "was renamed GGML_NATIVE; llama-bake sets GGML_NATIVE=OFF for portable images",
}

# Options llama-bake derives from other catalog fields; setting them by hand would fight the generator.
MANAGED_CMAKE_OPTIONS: dict[str, str] = {
    "GGML_CUDA": "set by `backend: cuda`",
    "GGML_VULKAN": "set by `backend: vulkan`",
    "CMAKE_CUDA_ARCHITECTURES": "derived from `gpu_families`",
    "GGML_NATIVE": "always OFF: a container image must not depend on the build machine's CPU",
}


def parse_cuda(version: str) -> tuple[int, int]:
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


def fmt_cuda(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
