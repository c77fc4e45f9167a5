"""doctor's NVIDIA driver checks, fed what `nvidia-smi --query-gpu=driver_version --format=csv,noheader` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.buildx.nvidia import MIN_DRIVER, checks, cuda_bases, driver_checks, parse_driver
from llama_bake.catalog.bases import Base
from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.project import Project
from llama_bake.plan.targets import make_plan
from tests.conftest import BASE

TWO_GPUS_580 = "580.65.06\n580.65.06\n"
ONE_GPU_550 = "550.127.05\n"


def test_the_minimum_drivers_are_nvidias() -> None:
    assert MIN_DRIVER[12] == 525
    assert MIN_DRIVER[13] == 580


@pytest.mark.parametrize(
    ("text", "version"),
    [(TWO_GPUS_580, (580, 65, 6)), (ONE_GPU_550, (550, 127, 5)), ("  525.60.13  \n", (525, 60, 13))],
)
def test_the_driver_version_is_read_from_nvidia_smi(text: str, version: tuple[int, ...]) -> None:
    assert parse_driver(text) == version


def test_a_new_enough_driver_passes_for_every_base() -> None:
    found = driver_checks({"cu12": "12.8.1", "cu13": "13.0.2"}, TWO_GPUS_580)
    assert [(c.name, c.ok) for c in found] == [("driver for cu12", True), ("driver for cu13", True)]
    assert found[1].detail == "580.65.6 runs CUDA 13.0.2 (needs >= 580)"


def test_a_driver_too_old_for_cuda_13_fails_that_base_only_with_the_fix() -> None:
    cu12, cu13 = driver_checks({"cu12": "12.8.1", "cu13": "13.0.2"}, ONE_GPU_550)
    assert cu12.ok
    assert not cu13.ok
    assert "550.127.5 is too old for CUDA 13.0.2 (needs >= 580)" in cu13.detail
    assert cu13.fix == "upgrade the NVIDIA driver to 580 or newer, or build `cu13` with `cuda: 12.x`"


def test_a_driver_too_old_for_any_cuda_says_to_upgrade() -> None:
    (check,) = driver_checks({"cu12": "12.8.1"}, "470.256.02\n")
    assert not check.ok
    assert check.fix == "upgrade the NVIDIA driver to 525 or newer, or build `cu12` with `cuda: 11.x`"


def test_no_nvidia_smi_or_no_cuda_base_means_no_check() -> None:
    assert driver_checks({"cu13": "13.0.2"}, None) == []
    assert driver_checks({}, TWO_GPUS_580) == []


def test_unreadable_nvidia_smi_output_is_a_failed_check() -> None:
    (check,) = driver_checks(
        {"cu13": "13.0.2"}, "NVIDIA-SMI has failed because it couldn't communicate with the driver"
    )
    assert not check.ok
    assert check.name == "NVIDIA driver"
    assert "couldn't communicate" in check.detail


def test_the_plan_gives_each_cuda_base_its_cuda_version() -> None:
    bases = (
        {"name": "cu12", **BASE},
        {"name": "cu13", **BASE, "cuda": "13.0.2"},
        {"name": "cpu", "backend": "cpu", "llama_cpp": BASE["llama_cpp"]},
    )
    catalog = Catalog(project=Project(), bases=tuple(Base.model_validate(b) for b in bases), models=())
    plan = make_plan(catalog, Path("/project"), Path("/project"))
    assert cuda_bases(plan) == {"cu12": "12.8.1", "cu13": "13.0.2"}


def test_no_plan_means_no_check() -> None:
    assert checks(None) == []
