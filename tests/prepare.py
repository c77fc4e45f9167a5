"""Makes the test stand-ins that need no builder (the llama.cpp source tree, the Debian root filesystem, the CUDA
toolkit images, the Debian toolchain), each cached in the test cache: ``python -m tests.prepare``.

``tests/run.sh`` runs this beside the Go builds of the tools, so that on a new machine the downloads (Debian's
packages, the llama-cpp-python sdist, 525 MB of CUDA wheels) overlap the compiles instead of waiting for them. Two
lanes run side by side, the toolchain's debootstrap beside the rest, which waits on the network and the disk more
than on the CPU. The fixtures make the same things on first use when this has not run; on a reused machine it
returns at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.cuda_standins import cuda_layouts
from tests.standins import debian_layout, debian_toolchain_layout, llama_cpp_tree

Step = tuple[str, Callable[[], object]]
LANES: tuple[tuple[Step, ...], ...] = (
    (
        ("the llama.cpp source tree", llama_cpp_tree),
        ("the Debian stand-in", debian_layout),
        ("the CUDA stand-ins", cuda_layouts),
    ),
    (("the Debian toolchain stand-in", debian_toolchain_layout),),
)


def run_lane(steps: tuple[Step, ...]) -> None:
    for name, make in steps:
        start = time.monotonic()
        made = make()
        where = ", ".join(str(p) for p in made.values()) if isinstance(made, dict) else str(made)
        print(f"prepare: {name} in {time.monotonic() - start:.0f} s ({where})", file=sys.stderr, flush=True)


def main() -> int:
    with ThreadPoolExecutor(len(LANES)) as pool:
        for lane in [pool.submit(run_lane, steps) for steps in LANES]:
            lane.result()  # a failed step raises here, and the run fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
