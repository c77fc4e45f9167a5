"""Whether this machine's NVIDIA driver is new enough for each CUDA base: the driver version `nvidia-smi` reports,
against the oldest driver each CUDA major version runs on. Takes the plan, gives ``doctor`` checks.

A machine without `nvidia-smi` gets no check: building CUDA images needs no driver (only running them does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

from llama_bake.buildx.checks import Check
from llama_bake.catalog.backends import BACKENDS
from llama_bake.plan.ir import LABEL_PREFIX, BakePlan

# The oldest Linux driver of each CUDA major version (NVIDIA's minor version compatibility: any 13.x toolkit runs
# on a 580 driver). An image's CUDA newer than the driver fails at the first CUDA call, not at build time.
MIN_DRIVER: dict[int, int] = {11: 450, 12: 525, 13: 580}

QUERY = ("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")


def cuda_bases(plan: BakePlan) -> dict[str, str]:
    """Each cuda base's name -> its CUDA version (as the catalog writes it, e.g. 13.0.2)."""
    found: dict[str, str] = {}
    for target in plan.targets:
        if target.kind == "base" and BACKENDS[target.shape.backend].cuda:
            cuda = dict(target.labels).get(f"{LABEL_PREFIX}.cuda")
            if isinstance(cuda, str):
                found[target.name] = cuda
    return found


def parse_driver(text: str) -> tuple[int, ...] | None:
    """The driver version in `nvidia-smi --query-gpu=driver_version` output (one line per GPU, all the same)."""
    match = re.search(r"^\s*(\d+(?:\.\d+)+)\s*$", text, re.MULTILINE)
    return tuple(int(part) for part in match[1].split(".")) if match else None


def driver_checks(bases: Mapping[str, str], smi_output: str | None) -> list[Check]:
    """One check per cuda base: is the driver (``smi_output``, None when there is no nvidia-smi) new enough?"""
    if smi_output is None or not bases:
        return []
    driver = parse_driver(smi_output)
    if driver is None:
        detail = f"cannot read a driver version from nvidia-smi: {smi_output.strip()[:200]!r}"
        fix = "check the driver installation (`nvidia-smi` must list the GPUs)"
        return [Check("NVIDIA driver", False, detail, fix)]
    shown = ".".join(map(str, driver))
    checks = []
    for name, cuda in sorted(bases.items()):
        major = int(cuda.split(".")[0])
        needed = MIN_DRIVER.get(major)
        if needed is None:
            checks.append(Check(f"driver for {name}", True, f"{shown}; CUDA {cuda} has no known minimum (not checked)"))
        elif driver[0] >= needed:
            checks.append(Check(f"driver for {name}", True, f"{shown} runs CUDA {cuda} (needs >= {needed})"))
        else:
            older = [m for m, d in sorted(MIN_DRIVER.items()) if driver[0] >= d]
            instead = f", or build `{name}` with `cuda: {older[-1]}.x`" if older else ""
            fix = f"upgrade the NVIDIA driver to {needed} or newer{instead}"
            detail = f"{shown} is too old for CUDA {cuda} (needs >= {needed}): its images will not start a GPU here"
            checks.append(Check(f"driver for {name}", False, detail, fix))
    return checks


def query_driver() -> str | None:
    """What `nvidia-smi` says of the driver; None when there is no nvidia-smi."""
    if shutil.which(QUERY[0]) is None:
        return None
    try:
        result = subprocess.run(QUERY, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return result.stdout if result.returncode == 0 else f"nvidia-smi exited {result.returncode}: {result.stderr}"


def checks(plan: BakePlan | None) -> list[Check]:
    """doctor's driver checks for ``plan``'s cuda bases (none without a plan or without nvidia-smi)."""
    bases = cuda_bases(plan) if plan is not None else {}
    return driver_checks(bases, query_driver() if bases else None)
