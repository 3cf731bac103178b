#!/usr/bin/env bash
# Runs the reliability scenarios of RELIABILITY.md against nsq-server-lite and real nsqd 1.3.0
# and prints the figure line each one writes, one scenario after the other (so that their
# timings do not disturb each other). Needs the peers: bash scripts/install-peers.sh.
#
#   bash scripts/reliability.sh            # soak of 20 s per broker
#   NSQ_SOAK_SECS=120 bash scripts/reliability.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NSQ_PEERS_DIR=${NSQ_PEERS_DIR:-$HOME/.cache/nsq-rs-peers}
# shellcheck source=/dev/null
. "$NSQ_PEERS_DIR/env.sh"
export CI=${CI:-true} # a missing peer fails instead of skipping

cargo build -q -p nsq-tests -p nsq-client --tests
for target in "nsq-tests nsqd_kill" "nsq-tests replicated_kill" "nsq-tests restarts" "nsq-tests faults" \
    "nsq-tests hostile_clients" "nsq-client hostile_nsqd" "nsq-tests soak"; do
    set -- $target
    printf '\n== %s (%s)\n' "$2" "$1"
    cargo test -q -p "$1" --test "$2" -- --nocapture --test-threads=1 2>&1 |
        grep -oE '(lite|nsqd)( \(|, |: ).*|test result.*|panicked.*' || true
done
