#!/usr/bin/env bash
# Issue 13's replica figures in one run (docs/BENCHMARKS.md, "Replicas on PostgreSQL"): the
# `allow` request at 32 connections against one replica on SQLite, one on PostgreSQL and three
# on PostgreSQL (connections spread over them), each PostgreSQL run in a fresh schema of the
# database $DATABASE_URL names (default: the test database on 127.0.0.1). About two minutes;
# loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
database=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
rounds=${ROUNDS:-2}
export PGOPTIONS="-c client_min_messages=warning"
cargo build --release --workspace --features bench --bins
load=./target/release/jitgate-load
schema() {
    local name="jitgate_bench_$1_$2_$$"
    psql "$database" -qc "DROP SCHEMA IF EXISTS $name CASCADE; CREATE SCHEMA $name" >&2
    echo "$database?options=-c%20search_path%3D$name"
}
run() {
    echo "== jitgate-load $*"
    "$load" --warmup 2s --mix allow=100 --connections 32 --duration 10s "$@" \
        2> >(grep -v 'WARN' >&2)
    echo
}
for round in $(seq "$rounds"); do
    echo "### round $round"
    run
    run --database-url "$(schema one "$round")"
    run --database-url "$(schema three "$round")" --replicas 3
done
psql "$database" -qAtc "SELECT 'DROP SCHEMA ' || nspname || ' CASCADE;' FROM pg_namespace \
    WHERE nspname LIKE 'jitgate_bench_%_$$'" | psql "$database" -q
