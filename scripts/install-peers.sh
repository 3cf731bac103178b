#!/usr/bin/env bash
# Install (or reuse from cache) the real NSQ peers that interop tests and benchmarks talk to.
#
# Usage:
#   scripts/install-peers.sh                       # install what is missing; prints `export` lines
#   . "${NSQ_PEERS_DIR:-$HOME/.cache/nsq-rs-peers}/env.sh"   # then use the peers in this shell
#   eval "$(scripts/install-peers.sh)"             # both at once (progress goes to stderr)
#
# Peers (all pinned by files under tests/peers/):
#   go      nsqd + nsqlookupd, nsq's bench_writer and bench_reader, nsq's command-line tools
#           nsq_tail, to_nsq, nsq_to_file and nsq_stat (for nsq-tools' interop tests), and the go-nsq programs in
#           tests/peers/go/cmd (nsq-peer for the interop tests, nsq-bench-client for
#           nsq-client-bench), built from tests/peers/go (go.mod pins github.com/nsqio/nsq and
#           go-nsq, go.sum pins everything else)                -> <cache>/bin/
#   rust    tokio-nsq-bench (tokio-nsq for nsq-client-bench), a cargo project of its own pinned
#           by tests/peers/rust/tokio-nsq-bench/Cargo.lock      -> <cache>/bin/
#   python  venv with tests/peers/python/requirements.txt (python-snappy, pynsq)  -> <cache>/venv/
#   node    nsqjs from tests/peers/js/package-lock.json         -> <cache>/node/node_modules/
#
# Environment:
#   NSQ_PEERS_DIR    cache dir (default: $HOME/.cache/nsq-rs-peers)
#   NSQ_PEERS        which peers to ensure, space separated (default: "go python node rust")
#   NSQ_PEERS_FORCE  set to 1 to rebuild even when the cache is valid
#   PYTHON           interpreter used to create the venv (default: python3)
#
# Each peer is skipped when its cache stamp matches the pinning files and a smoke check passes
# (nsqd/nsqlookupd `--version` must report the pinned version; every other program must run, so
# a cache from before a program was added fails it and is rebuilt). Any failure exits non-zero.
# Writes <cache>/env.sh, which exports NSQ_PEERS_DIR, NSQD_BIN, NSQLOOKUPD_BIN, NSQ_GO_PEER,
# NSQ_GO_BENCH, NSQ_BENCH_WRITER, NSQ_BENCH_READER, NSQ_GO_TAIL, NSQ_GO_TO_NSQ, NSQ_GO_TO_FILE,
# NSQ_GO_STAT (nsq's nsq_tail, to_nsq, nsq_to_file, nsq_stat), NSQ_PYTHON, NSQ_NODE_PATH/NODE_PATH,
# NSQ_TOKIO_NSQ_BENCH, and puts <cache>/bin and <cache>/venv/bin first on PATH (so `nsqd` and
# `python3` are the peers').
# Add a peer: write install_<name> and verify_<name>, add it to ALL_PEERS and to write_env.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_SRC="$ROOT/tests/peers"
CACHE=${NSQ_PEERS_DIR:-$HOME/.cache/nsq-rs-peers}
ALL_PEERS=(go python node rust)
read -r -a WANT <<<"${NSQ_PEERS:-${ALL_PEERS[*]}}"
FORCE=${NSQ_PEERS_FORCE:-0}
PYTHON=${PYTHON:-python3}

log() { printf '[install-peers] %s\n' "$*" >&2; }
die() {
    printf '[install-peers] ERROR: %s\n' "$*" >&2
    exit 1
}
set -E
trap 'printf "[install-peers] ERROR: exit %s at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH; it is needed to install the $2 peers (or leave them out: NSQ_PEERS=\"...\")"; }

# Cache key of a peer: hash of the files that pin it (plus anything else passed in).
key_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ "$FORCE" != 1 ] && [ -f "$CACHE/stamps/$1" ] && [ "$(cat "$CACHE/stamps/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$CACHE/stamps" && printf '%s\n' "$2" >"$CACHE/stamps/$1"; }
# Run a step, timing it; its output goes to stderr so stdout stays clean for `eval`.
timed() {
    local what=$1 t0=$SECONDS
    shift
    log "$what ..."
    "$@" >&2 || die "$what failed (exit $?)"
    log "$what: done in $((SECONDS - t0))s"
}

# ---- go: nsqd + nsqlookupd -----------------------------------------------------------------------
GO_DIR="$PEERS_SRC/go"
NSQ_VERSION=$(sed -nE 's/^[[:space:]]*(require[[:space:]]+)?github\.com\/nsqio\/nsq[[:space:]]+(v[^[:space:]]+).*/\2/p' "$GO_DIR/go.mod" | head -n 1)
[ -n "$NSQ_VERSION" ] || die "cannot find the github.com/nsqio/nsq version in $GO_DIR/go.mod"

verify_go() {
    local app out
    for app in nsqd nsqlookupd; do
        [ -x "$CACHE/bin/$app" ] || return 1
        out=$("$CACHE/bin/$app" --version 2>&1) || return 1
        [[ $out == "$app $NSQ_VERSION "* ]] || {
            log "$CACHE/bin/$app reports '$out', want $NSQ_VERSION"
            return 1
        }
    done
    # nsq's tools that have -version must report the pinned version.
    for app in nsq_tail nsq_to_file nsq_stat; do
        [ -x "$CACHE/bin/$app" ] || return 1
        out=$("$CACHE/bin/$app" -version 2>&1) || return 1
        [[ $out == "$app $NSQ_VERSION"* ]] || {
            log "$CACHE/bin/$app reports '$out', want $NSQ_VERSION"
            return 1
        }
    done
    # The go-nsq programs have no --version; a usage error (exit 2) shows that they run.
    for app in nsq-peer nsq-bench-client; do
        [ -x "$CACHE/bin/$app" ] || return 1
        "$CACHE/bin/$app" 2>/dev/null && return 1
        [ $? -eq 2 ] || {
            log "$CACHE/bin/$app does not run"
            return 1
        }
    done
    # bench_writer and bench_reader have no usage check either; --help exits 0 (flag.ErrHelp)
    # with the usage, which must list a flag of that program's own.
    local usage flag
    for app in bench_writer:-batch-size bench_reader:-rdy to_nsq:-producer-opt; do
        flag=${app#*:}
        app=${app%%:*}
        [ -x "$CACHE/bin/$app" ] || return 1
        usage=$("$CACHE/bin/$app" --help 2>&1) || true
        [[ $usage == *"$flag"* ]] || {
            log "$CACHE/bin/$app does not run"
            return 1
        }
    done
}

install_go() {
    local key
    key=$(key_of "$GO_DIR/go.mod" "$GO_DIR/go.sum" "$GO_DIR/tools.go" "$GO_DIR"/cmd/*/*.go)
    if stamp_ok go "$key" && verify_go; then
        log "go: nsqd/nsqlookupd $NSQ_VERSION cached in $CACHE/bin"
        return
    fi
    need go go
    local tmp="$CACHE/bin.tmp.$$"
    rm -rf "$CACHE"/bin.tmp.* # leftovers of failed builds (we hold the lock)
    mkdir -p "$tmp" "$CACHE/bin"
    # No `@version` on purpose: `go install pkg@v` asks the proxy for @v/list, which some proxies
    # refuse. The main module in tests/peers/go pins the version and carries nsq's own go-svc
    # `replace`, which `go install pkg@v` would ignore. GOTOOLCHAIN=local: never download a Go.
    timed "go: build nsqd + nsqlookupd $NSQ_VERSION ($(go env GOVERSION))" \
        env -C "$GO_DIR" GOTOOLCHAIN=local GOBIN="$tmp" \
        go install -mod=readonly -trimpath -buildvcs=false \
        github.com/nsqio/nsq/apps/nsqd github.com/nsqio/nsq/apps/nsqlookupd
    timed "go: build bench_writer + bench_reader (nsq $NSQ_VERSION)" \
        env -C "$GO_DIR" GOTOOLCHAIN=local GOBIN="$tmp" \
        go install -mod=readonly -trimpath -buildvcs=false \
        github.com/nsqio/nsq/bench/bench_writer github.com/nsqio/nsq/bench/bench_reader
    timed "go: build nsq_tail, to_nsq, nsq_to_file, nsq_stat (nsq $NSQ_VERSION)" \
        env -C "$GO_DIR" GOTOOLCHAIN=local GOBIN="$tmp" \
        go install -mod=readonly -trimpath -buildvcs=false \
        github.com/nsqio/nsq/apps/nsq_tail github.com/nsqio/nsq/apps/to_nsq \
        github.com/nsqio/nsq/apps/nsq_to_file github.com/nsqio/nsq/apps/nsq_stat
    timed "go: build nsq-peer, nsq-bench-client (go-nsq $(sed -nE 's/^[[:space:]]*github\.com\/nsqio\/go-nsq[[:space:]]+(v[^[:space:]]+).*/\1/p' "$GO_DIR/go.mod"))" \
        env -C "$GO_DIR" GOTOOLCHAIN=local GOBIN="$tmp" \
        go install -mod=readonly -trimpath -buildvcs=false ./cmd/nsq-peer ./cmd/nsq-bench-client
    mv -f "$tmp/nsqd" "$tmp/nsqlookupd" "$tmp/bench_writer" "$tmp/bench_reader" "$tmp/nsq-peer" \
        "$tmp/nsq-bench-client" "$tmp/nsq_tail" "$tmp/to_nsq" "$tmp/nsq_to_file" "$tmp/nsq_stat" \
        "$CACHE/bin/"
    rmdir "$tmp"
    verify_go || die "freshly built nsqd/nsqlookupd/bench_writer/bench_reader/nsq_tail/to_nsq/nsq_to_file/nsq_stat/nsq-peer/nsq-bench-client do not verify (see above)"
    stamp_set go "$key"
}

# ---- python: venv with python-snappy, pynsq -------------------------------------------------------
PY_REQ="$PEERS_SRC/python/requirements.txt"
VENV="$CACHE/venv"
# Modules that must import, one per requirement we rely on directly.
PY_MODULES=(snappy nsq tornado)

verify_python() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c "import $(
            IFS=,
            echo "${PY_MODULES[*]}"
        )" 2>/dev/null
}

install_python() {
    # The venv records its base interpreter (pyvenv.cfg); if that goes away, verify_python fails
    # and the venv is rebuilt, so the key only needs the requirements.
    local key
    key=$(key_of "$PY_REQ")
    if stamp_ok python "$key" && verify_python; then
        log "python: venv cached in $VENV"
        return
    fi
    need "$PYTHON" python
    rm -rf "$VENV"
    timed "python: create venv ($("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])'))" \
        "$PYTHON" -m venv "$VENV"
    timed "python: pip install -r ${PY_REQ#"$ROOT"/}" \
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --require-virtualenv -r "$PY_REQ"
    verify_python || die "venv at $VENV cannot import: ${PY_MODULES[*]}"
    stamp_set python "$key"
}

# ---- node: nsqjs ----------------------------------------------------------------------------------
JS_DIR="$PEERS_SRC/js"
NODE_DIR="$CACHE/node"

verify_node() {
    [ -f "$NODE_DIR/node_modules/nsqjs/package.json" ] &&
        command -v node >/dev/null 2>&1 &&
        NODE_PATH="$NODE_DIR/node_modules" node -e 'require("nsqjs")' 2>/dev/null
}

install_node() {
    local key
    key=$(key_of "$JS_DIR/package.json" "$JS_DIR/package-lock.json")
    if stamp_ok node "$key" && verify_node; then
        log "node: nsqjs cached in $NODE_DIR"
        return
    fi
    need node node
    need npm node
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp "$JS_DIR/package.json" "$JS_DIR/package-lock.json" "$NODE_DIR/"
    timed "node: npm ci (nsqjs, node $(node --version))" \
        npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error
    verify_node || die "node cannot require nsqjs from $NODE_DIR/node_modules"
    stamp_set node "$key"
}

# ---- rust: tokio-nsq-bench -----------------------------------------------------------------------
RUST_DIR="$PEERS_SRC/rust/tokio-nsq-bench"

verify_rust() {
    # A usage error (exit 2) shows that it runs.
    [ -x "$CACHE/bin/tokio-nsq-bench" ] || return 1
    "$CACHE/bin/tokio-nsq-bench" 2>/dev/null && return 1
    [ $? -eq 2 ] || {
        log "$CACHE/bin/tokio-nsq-bench does not run"
        return 1
    }
}

install_rust() {
    local key
    key=$(key_of "$RUST_DIR/Cargo.toml" "$RUST_DIR/Cargo.lock" "$RUST_DIR"/src/*.rs)
    if stamp_ok rust "$key" && verify_rust; then
        log "rust: tokio-nsq-bench cached in $CACHE/bin"
        return
    fi
    need cargo rust
    mkdir -p "$CACHE/bin"
    # Its own target dir in the cache (kept, so a rebuild after a source change is quick), and
    # --locked: the committed Cargo.lock is the pin.
    timed "rust: build tokio-nsq-bench ($(sed -nE 's/^tokio-nsq = "=?([^"]+)".*/tokio-nsq \1/p' "$RUST_DIR/Cargo.toml"), $(rustc --version))" \
        env CARGO_TARGET_DIR="$CACHE/rust-target" \
        cargo build --release --locked --manifest-path "$RUST_DIR/Cargo.toml"
    cp -f "$CACHE/rust-target/release/tokio-nsq-bench" "$CACHE/bin/tokio-nsq-bench.tmp.$$"
    mv -f "$CACHE/bin/tokio-nsq-bench.tmp.$$" "$CACHE/bin/tokio-nsq-bench"
    verify_rust || die "freshly built tokio-nsq-bench does not verify (see above)"
    stamp_set rust "$key"
}

# ---- env file -------------------------------------------------------------------------------------
# shellcheck disable=SC2016 # the PATH lines are expanded when env.sh is sourced
write_env() {
    local f="$CACHE/env.sh" tmp="$CACHE/env.sh.tmp.$$"
    {
        echo "# Written by scripts/install-peers.sh; source it to use the NSQ peers."
        printf 'export NSQ_PEERS_DIR=%q\n' "$CACHE"
        if verify_go; then
            printf 'export NSQD_BIN=%q\n' "$CACHE/bin/nsqd"
            printf 'export NSQLOOKUPD_BIN=%q\n' "$CACHE/bin/nsqlookupd"
            printf 'export NSQ_GO_PEER=%q\n' "$CACHE/bin/nsq-peer"
            printf 'export NSQ_GO_BENCH=%q\n' "$CACHE/bin/nsq-bench-client"
            printf 'export NSQ_BENCH_WRITER=%q\n' "$CACHE/bin/bench_writer"
            printf 'export NSQ_BENCH_READER=%q\n' "$CACHE/bin/bench_reader"
            printf 'export NSQ_GO_TAIL=%q\n' "$CACHE/bin/nsq_tail"
            printf 'export NSQ_GO_TO_NSQ=%q\n' "$CACHE/bin/to_nsq"
            printf 'export NSQ_GO_TO_FILE=%q\n' "$CACHE/bin/nsq_to_file"
            printf 'export NSQ_GO_STAT=%q\n' "$CACHE/bin/nsq_stat"
            printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' "$CACHE/bin" "$CACHE/bin"
        fi
        if verify_python; then
            printf 'export NSQ_PYTHON=%q\n' "$VENV/bin/python"
            printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' "$VENV/bin" "$VENV/bin"
        fi
        if verify_node; then
            printf 'export NSQ_NODE_PATH=%q\n' "$NODE_DIR/node_modules"
            printf 'case ":${NODE_PATH:-}:" in *:%q:*) ;; *) export NODE_PATH=%q${NODE_PATH:+:$NODE_PATH} ;; esac\n' \
                "$NODE_DIR/node_modules" "$NODE_DIR/node_modules"
        fi
        if verify_rust; then
            printf 'export NSQ_TOKIO_NSQ_BENCH=%q\n' "$CACHE/bin/tokio-nsq-bench"
        fi
    } >"$tmp"
    mv -f "$tmp" "$f"
}

report_versions() {
    verify_go && log "nsqd: $("$CACHE/bin/nsqd" --version 2>&1); nsqlookupd: $("$CACHE/bin/nsqlookupd" --version 2>&1)"
    verify_python && log "python: $("$VENV/bin/python" -c '
import sys
from importlib.metadata import version
print(sys.version.split()[0], *("%s %s" % (p, version(p)) for p in ("python-snappy", "pynsq", "tornado")), sep=", ")')"
    verify_rust && log "tokio-nsq-bench: $(sed -nE '/^name = "tokio-nsq"$/{n;s/^version = "(.*)"/tokio-nsq \1/p}' "$RUST_DIR/Cargo.lock")"
    verify_node && log "nsqjs: $(NODE_PATH="$NODE_DIR/node_modules" node -p 'require("nsqjs/package.json").version') (node $(node --version))"
    return 0
}

main() {
    local t0=$SECONDS p
    mkdir -p "$CACHE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$CACHE/.lock"
        flock 9 # serialise concurrent installers sharing one cache
    fi
    for p in "${WANT[@]}"; do
        case " ${ALL_PEERS[*]} " in
        *" $p "*) "install_$p" ;;
        *) die "unknown peer '$p' in NSQ_PEERS (known: ${ALL_PEERS[*]})" ;;
        esac
    done
    write_env
    report_versions
    log "peers ready in $((SECONDS - t0))s; env file: $CACHE/env.sh"
    grep '^export\|^case' "$CACHE/env.sh"
}

main
