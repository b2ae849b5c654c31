#!/usr/bin/env bash
# Runs assetd's main job on the example manifests in manifests/: one
# reconcile pass on the test engine (brought up if needed), then status.
#
#   scripts/demo.sh              # apply the examples once, show status
#   scripts/demo.sh --daemon     # ... then keep running `assetd run` (Ctrl-C stops)
#   scripts/demo.sh --clean      # remove what the demo deployed
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/load-env.sh
load_env scripts/testenv.sh
export DOCKER_HOST

cargo build --release --locked --quiet
assetd=target/release/assetd
state=/var/lib/assetd-demo
common=(--manifests manifests --state-dir "$state" --strategy local --instance demo)

if [ "${1:-}" = "--clean" ]; then
    # An empty manifests directory plus the operator's confirmation prunes all.
    empty=$(mktemp -d)
    "$assetd" apply --once --manifests "$empty" --state-dir "$state" \
        --strategy local --instance demo --allow-mass-prune
    rmdir "$empty"
    exit 0
fi

# factory-net, which the examples attach to, is declared in
# manifests/networks.yaml: assetd creates it before the assets.
"$assetd" validate manifests
"$assetd" plan "${common[@]}" || [ $? -eq 2 ]   # 2: changes pending
"$assetd" apply --once "${common[@]}"
"$assetd" status "${common[@]}"

if [ "${1:-}" = "--daemon" ]; then
    exec "$assetd" run "${common[@]}" --listen 127.0.0.1:9464
fi
