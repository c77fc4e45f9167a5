"""Makes the test stand-ins that need no builder (the Debian root filesystem, the llama.cpp source tree, the CUDA
toolkit images, Debian trixie with the Vulkan build packages), each cached in the test cache:
``python -m tests.prepare``.

``tests/run.sh`` runs this beside the Go builds of the tools, so that on a new machine the downloads (Debian's
packages, the llama-cpp-python sdist, 525 MB of CUDA wheels, trixie's toolchain) overlap the compiles instead of
waiting for them. The fixtures make the same things on first use when this has not run; on a reused machine it
returns at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tests.cuda_standins import cuda_layouts
from tests.standins import debian_layout, llama_cpp_tree, vulkan_toolchain_layout

STEPS: tuple[tuple[str, Callable[[], object]], ...] = (
    ("the llama.cpp source tree", llama_cpp_tree),
    ("the Debian stand-in", debian_layout),
    ("the CUDA stand-ins", cuda_layouts),
    ("the Vulkan toolchain stand-in (Debian trixie)", vulkan_toolchain_layout),
)


def main() -> int:
    for name, make in STEPS:
        start = time.monotonic()
        made = make()
        where = ", ".join(str(p) for p in made.values()) if isinstance(made, dict) else str(made)
        print(f"prepare: {name} in {time.monotonic() - start:.0f} s ({where})", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
