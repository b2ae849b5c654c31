#!/usr/bin/env bash
# The multi-node Swarm suite: three manager engines in network namespaces
# on this machine (scripts/multinode.sh), one assetd per manager. Tears
# the nodes down at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/load-env.sh
load_env scripts/testenv.sh
trap 'scripts/multinode.sh down >&2 || true' EXIT
load_env scripts/multinode.sh up
export ASSETD_MN_HOSTS ASSETD_MN_REGISTRY ASSETD_TEST_REGISTRY ASSETD_TEST_DOCKER_CONFIG
cargo test --locked --features multinode --test multinode -- --test-threads=1 --nocapture
