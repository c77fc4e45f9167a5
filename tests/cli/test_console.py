"""The terminal view of a build."""

from __future__ import annotations

from llama_bake.buildx.progress import Progress
from tests.fakes import event

FAKE_DIGEST = "sha256:" + "d" * 64


def test_the_terminal_view_shows_transfers_and_the_running_steps_last_lines() -> None:
    import base64

    from rich.console import Console

    from llama_bake.cli.console import _live_view

    progress = Progress()
    t0 = "2026-01-01T00:00:00Z"
    progress.feed(event(vertexes=[{"digest": "s", "name": "[base build 2/3] RUN cmake --build", "started": t0}]))
    progress.feed(event(vertexes=[{"digest": "p", "name": "[base build 1/3] FROM nvidia/cuda", "started": t0}]))
    lines = "".join(f"[{n:3d}%] Building CUDA object ops-{n}.cu.o\n" for n in range(10, 90, 10)).encode()
    progress.feed(event(logs=[{"vertex": "s", "data": base64.b64encode(lines).decode(), "timestamp": t0}]))
    pull = {"vertex": "p", "id": "sha256:layer", "total": 5_000_000_000, "current": 1_000_000_000, "started": t0}
    progress.feed(event(statuses=[{**pull, "timestamp": "2026-01-01T00:00:20Z"}]))
    console = Console(width=200, record=True, force_terminal=False)
    console.print(_live_view(progress))
    shown = console.export_text()
    assert "1.0 GB / 5.0 GB, 50.0 MB/s, 1m20s left" in shown
    assert "[ 80%] Building CUDA object ops-80.cu.o" in shown
    assert "[ 20%]" not in shown, "only the last lines"
