#!/usr/bin/env bash
# Runs every example of examples/ (none needs an external server: each starts its own
# nsq-server-lite brokers) and fails on the first that fails or runs over 60 s. CI runs it
# (.ci/run, step "examples"); run it from any directory:
#
#   bash scripts/examples.sh
#
# `shutdown` waits for Ctrl-C; here it is told to send itself SIGINT after 500 messages.
# The tests of `testing` run with the workspace's tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build -q -p nsq-examples --examples
for example in quickstart producer consumer handler tls auth shutdown pool dead_letter testing embedded wire; do
    args=()
    [ "$example" = shutdown ] && args=(-- --interrupt-after 500)
    printf '\n---- %s\n' "$example"
    timeout -k 5 60 cargo run -q -p nsq-examples --example "$example" "${args[@]}" </dev/null || {
        echo "examples.sh: example $example failed (exit $?)" >&2
        exit 1
    }
done
