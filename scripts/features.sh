#!/usr/bin/env bash
# Builds and tests nsq-client with each of its cargo features alone and with none, and
# nsq-proto likewise; checks that a build without default features pulls in no HTTP, TLS or
# compression crate. CI runs it (.ci/run, step "features"); run it from any directory.
#
#   bash scripts/features.sh
#
# Each nsq-client combination: clippy -D warnings on every target, then its unit and
# integration tests (the full-feature build is the README test command's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
    printf '\n---- %s\n' "$*"
    "$@"
}

for features in "" tls snappy deflate lookupd; do
    flags=(-p nsq-client --no-default-features)
    [ -z "$features" ] || flags+=(--features "$features")
    run cargo clippy "${flags[@]}" --all-targets -- -D warnings
    run cargo test "${flags[@]}" --lib --tests
done

for features in "" tls snappy deflate; do
    flags=(-p nsq-proto --no-default-features)
    [ -z "$features" ] || flags+=(--features "$features")
    run cargo clippy "${flags[@]}" --lib -- -D warnings
done

# The smallest build: a producer and a consumer of nsqd given by address, nothing else.
printf '\n---- dependencies of nsq-client without default features\n'
tree=$(cargo tree -p nsq-client --no-default-features -e normal --prefix none)
for crate in reqwest rustls tokio-rustls snap flate2 hyper; do
    if grep -q "^$crate v" <<<"$tree"; then
        echo "features.sh: nsq-client --no-default-features still depends on $crate:" >&2
        cargo tree -p nsq-client --no-default-features -e normal -i "$crate" >&2
        exit 1
    fi
done
echo "no reqwest, rustls, tokio-rustls, snap, flate2 or hyper: ok"
