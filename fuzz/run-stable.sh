#!/usr/bin/env bash
# Builds and runs a fuzz target with the stable toolchain, for machines
# without nightly or cargo-fuzz: the same SanitizerCoverage instrumentation
# cargo-fuzz adds (no AddressSanitizer: the code under test has no unsafe),
# with RUSTC_BOOTSTRAP=1 to allow it on stable.
#
#   fuzz/run-stable.sh [target] [seconds]     (defaults: open_cookie 300)
#
# The corpus is kept in fuzz/corpus/<target>, crashes in fuzz/artifacts/<target>/.
set -euo pipefail
target=${1:-open_cookie}
secs=${2:-300}
here=$(cd "$(dirname "$0")" && pwd)
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$here/target}
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation out of build scripts.
cargo build --manifest-path "$here/Cargo.toml" --release --target "$triple" --bin "$target"
mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
"$CARGO_TARGET_DIR/$triple/release/$target" "$here/corpus/$target" \
    -max_len=8192 -max_total_time="$secs" -artifact_prefix="$here/artifacts/$target/"
