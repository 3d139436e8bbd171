#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain and
# runs one: fuzz/run.sh TARGET [libFuzzer options], e.g. fuzz/run.sh policy_pack -max_total_time=600,
# or replays a crash: fuzz/run.sh TARGET artifacts/crash-… (paths relative to fuzz/).
set -euo pipefail
cd "$(dirname "$0")"
target="${1:?usage: fuzz/run.sh policy_pack|case_file|identity_token [libFuzzer options]}"
shift
# --target keeps the instrumentation off build scripts, which cannot link libFuzzer's hooks.
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$host" --bin "$target"
binary="target/$host/release/$target"
# Replaying a crash: fuzz/run.sh TARGET artifacts/crash-…
if [ $# -gt 0 ] && [ -f "$1" ]; then
    exec "$binary" "$@"
fi
mkdir -p "corpus/$target" artifacts
# Seeds: the shipped pack's policies and test cases.
case "$target" in
policy_pack) cp -n ../policies/*.cedar "corpus/$target/" ;;
case_file) cp -n ../policies/tests/*.toml "corpus/$target/" ;;
esac
exec "$binary" -artifact_prefix=artifacts/ "$@" "corpus/$target"
