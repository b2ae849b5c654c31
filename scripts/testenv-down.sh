#!/usr/bin/env bash
# Stop the assetd test dockerd started by scripts/testenv.sh (idempotent).
# The data root /var/lib/assetd-test/docker is kept, so images and the swarm
# survive a restart.
set -euo pipefail

SOCK=/run/assetd-test/docker.sock
PIDFILE=/run/assetd-test/docker.pid
STOP_DEADLINE=${ASSETD_TEST_STOP_DEADLINE:-30}

# Alive and not a zombie (an unreaped zombie still passes `kill -0`).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ if ($3 == "Z") exit 0; exit 1 }' "/proc/$1/stat" 2>/dev/null; }

log() { printf 'testenv-down: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

# Only trust the pidfile if it points at a dockerd serving our socket
# (guards against PID reuse after a crash).
pid=""
if [ -s "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if ! grep -q "dockerd.*$SOCK" <<<"$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"; then
        log "stale pidfile (pid $pid is not our dockerd); removing"
        rm -f "$PIDFILE"
        pid=""
    fi
fi
if [ -z "$pid" ]; then
    log "test dockerd is not running"
    exit 0
fi

log "stopping dockerd (pid $pid)"
# SIGTERM lets dockerd stop containers (it leaves swarm state on disk) and
# its managed containerd.
kill -TERM "$pid" 2>/dev/null || true
deadline=$(( $(date +%s) + STOP_DEADLINE ))
while alive "$pid"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "dockerd did not exit within ${STOP_DEADLINE}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
    fi
    sleep 0.2
done
rm -f "$PIDFILE"
log "stopped"
