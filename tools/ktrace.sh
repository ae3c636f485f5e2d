#!/usr/bin/env bash
# ktrace.sh: runs a CUDA program with the kernel tracer (bench/ktrace.c) loaded by the CUDA
# driver, which writes every kernel the program runs (eager or in a replayed CUDA graph)
# to a JSON-lines trace with its GPU start and end; tools/ktrace-summary.py then gives each
# kernel's share of a step with the overlaps of programmatic dependent launch counted once.
# Any CUDA program: llamaref's bench/gpu_bench or llama-diff, or another engine (PyTorch).
#
# Usage: tools/ktrace.sh [--lib FILE] -o TRACE.jsonl -- PROGRAM [ARGS...]
#   -o FILE     the trace to write (never overwritten: the run stops if FILE exists)
#   --lib FILE  the tracer library (default: bench/libllamaref_ktrace.so of this tree's
#               build, built by `make bench-gpu` where configure found CUPTI)
# Exit status: the program's; 2 for bad options, a missing library or an existing trace.
# Example (a batch-1 decode step with graphs; 32 layers):
#   tools/ktrace.sh -o b1.jsonl -- bench/gpu_bench --model DIR --only 4 --graphs --no-profile
#   tools/ktrace-summary.py --per 32 b1.jsonl
set -uo pipefail
usage() { sed -n '8,11p' "$0" | sed 's/^# //'; }
LIB=$(cd "$(dirname "$0")/.." && pwd)/bench/libllamaref_ktrace.so
TRACE=
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -o) [ -n "${2:-}" ] || { echo "ktrace.sh: -o needs a file" >&2; exit 2; }; TRACE=$2; shift ;;
    --lib) [ -n "${2:-}" ] || { echo "ktrace.sh: --lib needs a file" >&2; exit 2; }; LIB=$2; shift ;;
    --) shift; break ;;
    *) echo "ktrace.sh: unknown option $1 (--help lists them; the program goes after --)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$TRACE" ] || { echo "ktrace.sh: -o TRACE is required" >&2; exit 2; }
[ $# -gt 0 ] || { echo "ktrace.sh: no program given after --" >&2; exit 2; }
[ -f "$LIB" ] || { echo "ktrace.sh: $LIB: no tracer library (make bench-gpu builds it where configure found CUPTI; or --lib)" >&2; exit 2; }
[ ! -e "$TRACE" ] || { echo "ktrace.sh: $TRACE exists (a trace is never overwritten)" >&2; exit 2; }
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
CUDA_INJECTION64_PATH=$LIB LLAMAREF_KTRACE=$TRACE "$@"
rc=$?
[ -s "$TRACE" ] && echo "ktrace.sh: trace in $TRACE (tools/ktrace-summary.py $TRACE)" >&2
exit $rc
