#!/usr/bin/env bash
# Runs the cargo-fuzz targets of nsq-proto/fuzz, one after another, each for SECONDS with one
# job, its dictionary (dict/<target>.dict) and its seeds (seeds/<target>/, if any). CI runs it
# with a short time (.ci/run's "fuzz" step); run it with a long one for a longer local run:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 20 s, every target
#
# Installs what it needs when missing: the nightly toolchain (rustup, minimal profile) and
# cargo-fuzz (cargo install --locked). Builds every target once, then runs them. Prints each
# target's executions (libFuzzer's stat::number_of_executed_units) and a summary table. Exits
# non-zero when a target fails to build, crashes (panic, timeout, out of memory: the input is
# saved in nsq-proto/fuzz/artifacts/<target>/) or ends without its final stats.
#
# Environment:
#   FUZZ_SANITIZER   cargo fuzz --sanitizer (default: none; the crates forbid unsafe code, so
#                    AddressSanitizer mostly costs build and run time; "address" to use it)
#   FUZZ_TARGET_DIR  the fuzz build's target directory (default: nsq-proto/fuzz/target)
#   FUZZ_CORPUS_DIR  where the corpora live, one directory per target (default:
#                    nsq-proto/fuzz/corpus); relative paths are taken from the current directory
#   FUZZ_ARGS        more libFuzzer flags for every run
#   FUZZ_LOG_DIR     where each run's full log goes (default: a temporary directory)
set -euo pipefail

CALLER_DIR=$(pwd)
# An absolute path for $1, relative ones taken from where the script was called.
absolute() {
    case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$CALLER_DIR" "$1" ;;
    esac
}
cd "$(dirname "${BASH_SOURCE[0]}")/../nsq-proto/fuzz"
SECONDS_EACH=${1:-20}
shift || true
case $SECONDS_EACH in
'' | *[!0-9]*)
    echo "scripts/fuzz.sh: SECONDS must be a whole number, got '$SECONDS_EACH'" >&2
    exit 2
    ;;
esac
SANITIZER=${FUZZ_SANITIZER:-none}
LOG_DIR=$(absolute "${FUZZ_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/nsq-fuzz.XXXXXX")}")
CORPUS_DIR=$(pwd)/corpus
[ -z "${FUZZ_CORPUS_DIR:-}" ] || CORPUS_DIR=$(absolute "$FUZZ_CORPUS_DIR")
TARGET_DIR=$(pwd)/target
[ -z "${FUZZ_TARGET_DIR:-}" ] || TARGET_DIR=$(absolute "$FUZZ_TARGET_DIR")
mkdir -p "$LOG_DIR"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain; installing it (minimal profile)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; installing it"
    cargo install cargo-fuzz --locked
fi
printf 'fuzz.sh: %s, %s, sanitizer %s, %ss per target\n' \
    "$(cargo +nightly --version)" "$(cargo +nightly fuzz --version)" "$SANITIZER" "$SECONDS_EACH"
printf 'fuzz.sh: target dir %s, corpora in %s, logs in %s\n' \
    "$TARGET_DIR" "$CORPUS_DIR" "$LOG_DIR"

BUILD=(--sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")
if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
[ ${#TARGETS[@]} -gt 0 ] || {
    echo "fuzz.sh: no fuzz targets found" >&2
    exit 1
}

t0=$SECONDS
cargo +nightly fuzz build "${BUILD[@]}"
printf 'fuzz.sh: built %s targets in %ss\n' "${#TARGETS[@]}" "$((SECONDS - t0))"

# A libFuzzer stat from a run's log, or "?".
stat() {
    local value
    value=$(sed -n "s/^stat::$1: *//p" "$2" | tail -n 1)
    printf '%s' "${value:-?}"
}

ROWS=()
FAILED=0
for target in "${TARGETS[@]}"; do
    corpus=$CORPUS_DIR/$target
    mkdir -p "$corpus"
    dirs=("$corpus")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    flags=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048)
    [ -f "dict/$target.dict" ] && flags+=(-dict="dict/$target.dict")
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
    flags+=(${FUZZ_ARGS:-})
    log=$LOG_DIR/$target.log
    printf '\n---- %s: cargo +nightly fuzz run %s %s %s -- %s\n' \
        "$target" "${BUILD[*]}" "$target" "${dirs[*]}" "${flags[*]}"
    t1=$SECONDS
    rc=0
    cargo +nightly fuzz run "${BUILD[@]}" "$target" "${dirs[@]}" -- "${flags[@]}" >"$log" 2>&1 || rc=$?
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    rss=$(stat peak_rss_mb "$log")
    result=ok
    if [ "$rc" -ne 0 ] || [ "$execs" = "?" ]; then
        result="FAILED (exit $rc)"
        FAILED=1
        # The crash report: the panic or sanitizer message and the saved input.
        grep -E -A12 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY:" "$log" | head -n 60 || true
        grep -E "Test unit written to|artifact_prefix" "$log" || true
        tail -n 5 "$log"
    fi
    printf '%s: %s executions in %ss (%s/s), peak RSS %s MB, corpus %s files: %s\n' \
        "$target" "$execs" "$((SECONDS - t1))" "$rate" "$rss" \
        "$(find "$corpus" -type f | wc -l)" "$result"
    ROWS+=("$(printf '%-18s %12s %8s %10s  %s' "$target" "$execs" "$rate" "$rss" "$result")")
done

printf '\n%-18s %12s %8s %10s  %s\n' target executions exec/s "RSS (MB)" result
printf '%s\n' "${ROWS[@]}"
printf 'fuzz.sh: %ss in all\n' "$((SECONDS - t0))"
exit "$FAILED"
