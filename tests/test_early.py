"""The early builds' report (tests/early.py): read from `llama-bake build --progress plain` output."""

from __future__ import annotations

from tests.early import report_line, slowest_steps

PLAIN = """\
[llama-cuda build-src 1/4] RUN set -eu; apt-get update ... DONE 32.2s
[llama-cuda] | [ 17%] Building CUDA object ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/cumsum.cu.o
[llama-cuda build 1/1] RUN --mount=type=bind,from=ccache-import ... DONE 1543.4s
[llama-cuda runtime 2/9] COPY --link --from=cuda-libs /cuda-libs/ / ... DONE 0.4s
[tiny-cuda stage-1 1/3] COPY --link --chmod=644 --from=weights-file /tiny.gguf /models/tiny.gguf ... CACHED
[llama-cuda runtime 1/9] RUN set -eu; apt-get install ... DONE 12.0s
"""


def test_the_slowest_steps_are_read_from_the_plain_progress_longest_first() -> None:
    assert slowest_steps(PLAIN) == [
        (1543.4, "llama-cuda build 1/1"),
        (32.2, "llama-cuda build-src 1/4"),
        (12.0, "llama-cuda runtime 1/9"),
    ]
    assert slowest_steps(PLAIN, count=1) == [(1543.4, "llama-cuda build 1/1")]
    assert slowest_steps("no step finished\n") == []


def test_the_report_line_says_when_the_build_ran_and_where_its_time_went() -> None:
    line = report_line("cuda", 30.0, 1730.0, PLAIN)
    assert line == (
        "early build cuda: 28.3 min (0.5-28.8 min in); slowest steps: llama-cuda build 1/1 1543 s, "
        "llama-cuda build-src 1/4 32 s, llama-cuda runtime 1/9 12 s"
    )


def test_a_build_from_the_cache_says_that_no_step_ran() -> None:
    cached = "[llama-cuda build 1/1] RUN cmake ... CACHED\n"
    assert report_line("cuda", 0.0, 30.0, cached).endswith("slowest steps: none ran (all from the cache)")
