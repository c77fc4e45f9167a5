"""Terminal output: highlighted on a terminal, plain bytes when piped (rich is imported only then)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_bake.progress import Progress, Vertex
    from llama_bake.summary import Summary


def show(text: str, language: str, color: bool | None) -> None:
    if color is None:
        color = sys.stdout.isatty()
    if not color:
        sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.syntax import Syntax

    # Highlighted text printed whole: a Syntax panel would crop every line at the terminal's width, and a
    # long args line cut short misleads a reviewer; the terminal wraps it instead.
    highlighted = Syntax(text, language, background_color="default").highlight(text)
    highlighted.rstrip()
    Console(force_terminal=True, soft_wrap=True).print(highlighted)


class BuildDisplay:
    """Shows a build as it runs: ``plain`` prints one line per finished step, ``tty`` a live table,
    ``quiet`` nothing, ``rawjson`` BuildKit's own stream. ``auto`` is tty on a terminal, else plain."""

    def __init__(self, mode: str) -> None:
        if mode == "auto":
            mode = "tty" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self._live: Any = None
        self._printed: set[str] = set()

    def __enter__(self) -> BuildDisplay:
        if self.mode == "tty":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, line: str, progress: Progress, changed: list[Vertex]) -> None:
        if self.mode == "rawjson":
            sys.stderr.write(line if line.endswith("\n") else line + "\n")
        elif self.mode == "plain":
            for vertex in changed:
                self._plain(vertex)
        elif self.mode == "tty" and self._live is not None and changed:
            self._live.update(_table(progress))

    def _plain(self, vertex: Vertex) -> None:
        if vertex.digest in self._printed or not (vertex.completed or vertex.error):
            return
        if not vertex.is_step and not vertex.error:
            return
        self._printed.add(vertex.digest)
        if vertex.error:
            state = "ERROR " + vertex.error.strip().splitlines()[0]
        elif vertex.cached:
            state = "CACHED"
        else:
            seconds = (vertex.completed - vertex.started).total_seconds() if vertex.completed and vertex.started else 0
            state = f"DONE {seconds:.1f}s"
        sys.stderr.write(f"{vertex.name.strip()} ... {state}\n")
        sys.stderr.flush()


def _table(progress: Progress) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("target", "state", "executed", "cached", "step"):
        table.add_column(column)
    finished = progress.finished_targets()
    for name, state in sorted(progress.targets.items()):
        if state.failed is not None:
            status = "[red]failed[/red]"
        elif state.current:
            status = "[yellow]running[/yellow]"
        else:
            status = "[green]done[/green]" if name in finished else "waiting"
        table.add_row(name, status, str(state.executed), str(state.cached), state.current[:60])
    return table


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as plain-text lines in left-aligned columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def summary_text(summary: Summary) -> str:
    pinned = any(t.base_digest for t in summary.targets)
    rows = [("TARGET", "STATUS", "IMAGE", "DIGEST", "TIME", "STEPS RUN/CACHED", *(("ON BASE",) if pinned else ()))]
    for t in summary.targets:
        digest = t.digest[:19] if t.digest else "-"
        base = (t.base_digest[:19] if t.base_digest else "-",) if pinned else ()
        rows.append(
            (t.name, t.status, t.image, digest, f"{t.wall_seconds:.1f}s", f"{t.steps_executed}/{t.steps_cached}", *base)
        )
    lines = columns(rows)
    how = " in two phases (bases, then the models on their digests)" if summary.phases > 1 else ""
    lines.append(
        f"{len(summary.targets)} targets on builder {summary.builder}{how} in {summary.wall_seconds:.1f}s: "
        f"{summary.steps_executed} steps run, {summary.steps_cached} cached"
    )
    lines += [f"buildx: {message}" for message in summary.messages]  # buildx's own words: warnings, notes
    if not any(t.digest for t in summary.targets) and not any("No output specified" in m for m in summary.messages):
        lines.append("images stayed in the builder's cache: add --push, --load or --output to export them")
    return "\n".join(lines) + "\n"
