#!/usr/bin/env bash
# Issue 6's end-to-end targets, measured in one run by jitgate-load (docs/BENCHMARKS.md has the
# results and what each line compares). Needs a cedar-agent binary built from its own repository:
#
#   git clone https://github.com/permitio/cedar-agent /tmp/cedar-agent
#   (cd /tmp/cedar-agent && cargo build --release)
#   benches/load-targets.sh /tmp/cedar-agent/target/release/cedar-agent
#
# About eight minutes on 2 cores, most of it the million-request memory run; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cedar_agent=${1:?usage: benches/load-targets.sh <cedar-agent binary>}
cargo build --release --workspace --features bench --bins
load=./target/release/jitgate-load
run() {
    echo "== jitgate-load $*"
    "$load" --warmup 2s "$@" 2> >(grep -v 'WARN' >&2)
    echo
}
for connections in 4 32; do
    run --target cedar-agent --cedar-agent "$cedar_agent" --connections "$connections" --duration 10s
    run --target stripped --connections "$connections" --duration 10s
    run --mix allow=100 --connections "$connections" --duration 10s
    run --mix allow=100 --discard-writes --connections "$connections" --duration 10s
done
# A 1,000-policy pack (the 16 shipped policies and 984 generated grants), rewritten every second
# in the second half of the run.
run --connections 4 --duration 20s --extra-policies 984 --reload-every 1s
# Memory: RSS after 10,000 requests and after 1,000,000.
run --connections 32 --duration 30m --requests 1000000 --rss-after 10000
