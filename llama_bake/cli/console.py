"""Terminal output: highlighted on a terminal, plain bytes when piped (rich is imported only then)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_bake.buildx.progress import Progress, Transfers, Vertex
    from llama_bake.buildx.summary import Summary

# plain progress: a line on each target's transfers at most this often (BuildKit's clock), and at the end
PLAIN_TRANSFER_EVERY = 15.0
LOG_TAIL = 6  # tty: the running step's last lines under the table


def size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def transfer_text(moved: Transfers) -> str:
    """``1.2 GB / 16.0 GB, 85.0 MB/s, 2m54s left`` (the parts that are known)."""
    if moved.total <= 0:
        return ""
    parts = [f"{size(moved.current)} / {size(moved.total)}"]
    if moved.rate > 0:
        parts.append(f"{size(moved.rate)}/s")
    eta = moved.eta
    if eta is not None:
        parts.append(f"{duration(eta)} left")
    return ", ".join(parts)


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
        self._transfer_said: dict[str, tuple[float, bool]] = {}  # target -> (BuildKit seconds, finished)

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
            for vertex, text in progress.new_logs:
                if vertex.is_step:  # the step's own output as it comes: a compile's log, live
                    sys.stderr.write(f"[{vertex.target}] | {text}\n")
            for vertex in changed:
                self._plain(vertex)
            for target in dict.fromkeys(v.target for v in changed if v.transfers and v.target):
                self._plain_transfers(target, progress)
            sys.stderr.flush()
        elif self.mode == "tty" and self._live is not None and (changed or progress.new_logs):
            self._live.update(_live_view(progress))

    def _plain_transfers(self, target: str, progress: Progress) -> None:
        moved = progress.target(target).transfers()
        if moved.total <= 0:
            return
        said, finished = self._transfer_said.get(target, (-PLAIN_TRANSFER_EVERY, False))
        if finished or (moved.active and moved.seconds - said < PLAIN_TRANSFER_EVERY):
            return
        self._transfer_said[target] = (moved.seconds, not moved.active)
        sys.stderr.write(f"[{target}] transfers: {transfer_text(moved)}\n")

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


def _live_view(progress: Progress) -> Any:
    """The table of targets, then the last lines of the newest running step (a compile, as it goes)."""
    from rich.console import Group
    from rich.text import Text

    table = _table(progress)
    logging = [
        v
        for state in progress.targets.values()
        for v in state.steps
        if v.started and not v.completed and v.log and v.last_output is not None
    ]
    if not logging:
        return table
    vertex = max(logging, key=lambda v: (v.last_output, v.digest))
    tail = Text(
        "\n".join(f"  {line}" for line in vertex.log[-LOG_TAIL:]), style="dim", no_wrap=True, overflow="ellipsis"
    )
    return Group(table, Text(f"{vertex.target}: {vertex.step[:80]}", style="bold"), tail)


def _table(progress: Progress) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("target", "state", "executed", "cached", "transfers", "step"):
        table.add_column(column)
    finished = progress.finished_targets()
    for name, state in sorted(progress.targets.items()):
        if state.failed is not None:
            status = "[red]failed[/red]"
        elif state.current:
            status = "[yellow]running[/yellow]"
        else:
            status = "[green]done[/green]" if name in finished else "waiting"
        moved = transfer_text(state.transfers())
        running = state.running
        step = state.current[:60]
        if running is not None and running.started is not None:
            # No byte counts for `ADD <url>` and pushes from BuildKit: how long the step has run, at least.
            step += f" ({duration((datetime.now(timezone.utc) - running.started).total_seconds())})"
        table.add_row(name, status, str(state.executed), str(state.cached), moved, step)
    return table


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as plain-text lines in left-aligned columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def summary_text(summary: Summary) -> str:
    pinned = any(t.base_digest for t in summary.targets)
    # Platforms are shown when any target is not the plain amd64 image.
    multi = any(t.platforms != ("linux/amd64",) for t in summary.targets)
    head = ("TARGET", "STATUS", "IMAGE", "DIGEST", "TIME", "STEPS RUN/CACHED")
    rows = [(*head, *(("ON BASE",) if pinned else ()), *(("PLATFORMS",) if multi else ()))]
    for t in summary.targets:
        digest = ("id " if t.digest_is_image_id else "") + t.digest[:19] if t.digest else "-"
        base = (t.base_digest[:19] if t.base_digest else "-",) if pinned else ()
        platforms = (",".join(p.removeprefix("linux/") for p in t.platforms),) if multi else ()
        timing = (f"{t.wall_seconds:.1f}s", f"{t.steps_executed}/{t.steps_cached}")
        rows.append((t.name, t.status, t.image, digest, *timing, *base, *platforms))
    lines = columns(rows)
    how = " in two phases (bases, then the models on their digests)" if summary.phases > 1 else ""
    lines.append(
        f"{len(summary.targets)} targets on builder {summary.builder}{how} in {summary.wall_seconds:.1f}s: "
        f"{summary.steps_executed} steps run, {summary.steps_cached} cached"
    )
    for t in summary.targets:
        if t.ccache_hit_rate is not None:
            lines.append(
                f"{t.name}: compiler cache {t.ccache_hit_rate:.0%} hits "
                f"({t.ccache_hits} of {(t.ccache_hits or 0) + (t.ccache_misses or 0)} compiles)"
            )
    lines += [f"buildx: {message}" for message in summary.messages]  # buildx's own words: warnings, notes
    if any(t.digest_is_image_id for t in summary.targets):
        lines.append("id: the engine's image ID (the classic image store keeps no manifest digest)")
    if not any(t.digest for t in summary.targets) and not any("No output specified" in m for m in summary.messages):
        lines.append("images stayed in the builder's cache: add --push, --load or --output to export them")
    return "\n".join(lines) + "\n"
