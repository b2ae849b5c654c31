#!/usr/bin/env bash
# The whole test suite: brings up the test engine (installing what is
# missing), then runs every unit and integration test against it.
#
#   scripts/test.sh            # everything CI runs
#   scripts/test.sh --quick    # skip the fault suite, the multi-node Swarm suite and the bench
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

. scripts/load-env.sh
load_env scripts/testenv.sh
export DOCKER_HOST

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is not installed (rustup or Debian's cargo)" >&2
    exit 1
fi

cargo fmt --all -- --check
# With the multinode and bench features, so tests/multinode.rs and the
# benchmark binary are linted too.
cargo clippy --all-targets --locked --features multinode,bench -- -D warnings
# Tests share one engine; each uses its own names, labels, ports and
# --instance, so they run in parallel.
cargo test --locked --all-targets --features bench -- --test-threads="${ASSETD_TEST_THREADS:-6}"

if [ "$quick" = 0 ]; then
    # The package, man pages, completions, alert rules and Grafana queries
    # (a real Prometheus scraping a real daemon). It packages the debug
    # build the tests just used: a release build would add minutes and
    # test the same packaging; scripts/package.sh alone builds the
    # release .deb that operators install.
    ASSETD_BINARY=target/debug/assetd scripts/test-package.sh
    scripts/test-reliability.sh
    scripts/test-multinode.sh
    # The benchmark once, small, on the debug build: its figures mean
    # nothing here, but it fails when a figure can no longer be measured,
    # so it cannot rot (BENCHMARKS.md has the real run).
    cargo run --locked --bin assetd-bench --features bench -- --quick
fi
