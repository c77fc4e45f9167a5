#!/usr/bin/env bash
# The one test command (the README's, and what .ci/run calls): installs what the tests need, runs
# lint, types and every test tier, and stops whatever it started. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where a run's time went: each phase's end, in seconds since the start (the tier table's figures come from these).
phase() { echo "tests/run.sh: $1 at ${SECONDS} s" >&2; }

VENV=${LLAMA_BAKE_VENV:-.venv}
# Debian's packages first (the Go builds and the stand-ins need some); then the Go builds of the tools (minutes
# on a new machine, nothing on a reused one) start at once, beside the venv and lint, and the stand-ins that
# need no builder (downloads, mostly) are made beside them. Each runs in its own process group, so that a failure
# anywhere stops the others.
bash .ci/install-tools.sh --packages-only
tools=""
prepare=""
stop_background() {
    for group in $tools $prepare; do kill -- -"$group" 2>/dev/null || true; done
}
trap stop_background EXIT
setsid bash .ci/install-tools.sh &
tools=$!

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
# Lint and types: a minute, so that a mistake they catch fails the run before the tools' builds are done.
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
phase "venv, lint and types done"

setsid "$VENV/bin/python" -m tests.prepare &
prepare=$!
built=0
wait "$tools" || built=$?
if [ "$built" -ne 0 ]; then  # the trap stops the stand-ins
    echo "tests/run.sh: building the tools failed (exit $built): see the install-tools lines above" >&2
    exit 1
fi
prepared=0
wait "$prepare" || prepared=$?
trap - EXIT
if [ "$prepared" -ne 0 ]; then
    echo "tests/run.sh: making the test stand-ins failed (exit $prepared): see the lines above" >&2
    exit 1
fi
phase "tools built and stand-ins made"
# The venv's commands (llama-bake, check-jsonschema) and the built tools, for the tests that run them.
export PATH="$(cd "$VENV/bin" && pwd):${LLAMA_BAKE_TOOLS:-$HOME/.cache/llama-bake/tools}:$PATH"

# The benchmarks are never timed assertions; a smoke run at tiny sizes keeps their code working. It runs beside
# pytest at the lowest priority, on builders and registries of its own, so it takes only what the tests leave idle.
bench_log=$(mktemp)
setsid nice -n 19 "$VENV/bin/python" bench/run.py --smoke >"$bench_log" 2>&1 &
bench=$!
trap 'kill -- -"$bench" 2>/dev/null || true' EXIT

status=0
# -m "": every tier (plain `pytest` runs the fast, pure one only); later -m arguments in "$@" narrow it.
# --durations: the slowest tests and fixtures, so that a run's log shows where its time went.
"$VENV/bin/python" -m pytest -m "" --durations=25 "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"
phase "pytest done"
benched=0
wait "$bench" || benched=$?
trap - EXIT
cat "$bench_log" >&2
rm -f "$bench_log"
if [ "$benched" -ne 0 ]; then
    echo "tests/run.sh: the benchmarks' smoke run failed (exit $benched): see the lines above" >&2
    exit 1
fi
phase "benchmarks smoke run done"
