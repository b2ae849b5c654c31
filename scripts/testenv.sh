#!/usr/bin/env bash
# Bring up the assetd test Docker engine (idempotent, no systemd needed).
#
#   eval "$(scripts/testenv.sh)"     # exports DOCKER_HOST for this engine
#
# - installs docker.io, busybox-static, iptables, iproute2 when missing (Debian 12)
# - starts a private dockerd on /run/assetd-test/docker.sock unless one answers
# - makes it a one-node Swarm manager (skip: ASSETD_TEST_NO_SWARM=1)
# - imports offline images assetd-test/busybox:1 and :2 (no registry needed)
# - loads the ip_vs kernel module (Swarm's ingress routing mesh needs it);
#   fails when it cannot, unless waived with ASSETD_TEST_NO_IP_VS=1
# - creates the user assetd-test-other (tests give it a manifest file)
# - starts a private registry on 127.0.0.1:5599 (Debian's docker-registry,
#   htpasswd auth), logs in with a client config of its own and pushes the
#   test images to it
#
# Human output goes to stderr; stdout carries only `export` lines (DOCKER_HOST,
# ASSETD_TEST_REGISTRY and ASSETD_TEST_DOCKER_CONFIG, and
# ASSETD_TEST_NO_IP_VS=1 when this kernel cannot have ip_vs).
# Stop the engine with scripts/testenv-down.sh (data root is kept).
set -euo pipefail

SOCK=/run/assetd-test/docker.sock
HOST="unix://$SOCK"
DATA_ROOT=/var/lib/assetd-test/docker
EXEC_ROOT=/run/assetd-test/exec
PIDFILE=/run/assetd-test/docker.pid
LOG=/var/log/assetd-test-dockerd.log
START_DEADLINE=${ASSETD_TEST_START_DEADLINE:-60}
# Bump when the image recipe below changes: stored as the image comment, so
# stale images from an older recipe get re-imported.
IMAGE_REV=4
IMAGES=(assetd-test/busybox:1 assetd-test/busybox:2)

TMPDIRS=""
# shellcheck disable=SC2086
trap '[ -z "$TMPDIRS" ] || rm -rf $TMPDIRS' EXIT

# Alive and not a zombie (an unreaped zombie still passes `kill -0`).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ if ($3 == "Z") exit 0; exit 1 }' "/proc/$1/stat" 2>/dev/null; }

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# Prefer the distro CLI (matches the 20.10 engine); a newer CLI also works
# because it negotiates the API version down.
if [ -x /usr/bin/docker ]; then DOCKER_BIN=/usr/bin/docker; else DOCKER_BIN=docker; fi
d() { "$DOCKER_BIN" -H "$HOST" "$@"; }

engine_up() { d version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# --- packages --------------------------------------------------------------
# Only touch apt when something is actually missing (keeps the warm path fast).
ensure_packages() {
    local missing=""
    command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
    [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
    command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$missing iptables"
    # scripts/multinode.sh makes network namespaces and veth pairs.
    command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /bin/ip ] || missing="$missing iproute2"
    # tests/systemd.rs checks the unit with systemd-analyze.
    command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
    # tests/registry.rs: a real private registry with htpasswd auth.
    [ -x /usr/bin/docker-registry ] || missing="$missing docker-registry"
    command -v htpasswd >/dev/null 2>&1 || missing="$missing apache2-utils"
    # The revision guard reads the manifests' git commit; the multi-node
    # suite makes git copies.
    command -v git >/dev/null 2>&1 || missing="$missing git"
    command -v curl >/dev/null 2>&1 || missing="$missing curl"
    # tests/age_secrets.rs encrypts with the reference tool.
    command -v age >/dev/null 2>&1 || missing="$missing age"
    # tests/dashboard.rs drives the web page in a real browser, and
    # injects axe-core from the npm registry.
    [ -x /usr/bin/chromium ] || missing="$missing chromium"
    [ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
    # A dynamically linked busybox (package "busybox") would not run inside
    # the libc-less test image; we need the static one.
    # (The status captured first: `cmd | grep -q` under pipefail fails
    # when grep exits before cmd has written everything.)
    if [ -z "$missing" ] && ! [[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)" == *"ok installed"* ]]; then
        missing="$missing busybox-static"
    fi
    [ -n "$missing" ] || return 0
    log "installing:$missing"
    # needrestart (if installed) would otherwise scan services after install.
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
}

# --- dockerd ---------------------------------------------------------------
pid_is_our_dockerd() {
    local pid cmdline
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] || return 1
    cmdline=$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    grep -q "dockerd.*$SOCK" <<<"$cmdline"
}

start_dockerd() {
    local dockerd_bin
    dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
    mkdir -p "$(dirname "$SOCK")" "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
    # Stale pidfile (e.g. after a crash or PID reuse) would make dockerd refuse to start.
    rm -f "$PIDFILE"
    log "starting dockerd on $HOST (log: $LOG)"
    printf '\n===== %s testenv.sh starting dockerd =====\n' "$(date -Is)" >>"$LOG"
    # setsid+nohup: fully detached, survives the calling shell and its SIGHUP.
    # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: swarm tasks use the local image
    # instead of first trying (and failing, slowly) to pull from a registry.
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 \
    setsid nohup "$dockerd_bin" \
        --host "$HOST" \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    # Not a process-group leader, so setsid and nohup exec in place: $! is dockerd.
    DOCKERD_PID=$!
}

wait_engine() {
    local deadline=$(( $(date +%s) + START_DEADLINE ))
    until engine_up; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "dockerd did not answer on $HOST within ${START_DEADLINE}s; log tail:"
            tail -n 40 "$LOG" >&2 || true
            exit 1
        fi
        # If the dockerd died there is no point waiting for the deadline.
        if ! alive "$DOCKERD_PID"; then
            log "dockerd (pid $DOCKERD_PID) exited during startup; log tail:"
            tail -n 40 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

ensure_engine() {
    if engine_up; then
        # Another dockerd on this host (a test's private engine) may have
        # deleted the default bridge on its way out; containers then fail
        # to start. A restart of ours recreates it.
        if [ "$(d info --format '{{.Swarm.LocalNodeState}}')" != "" ] && ! ip link show docker0 >/dev/null 2>&1; then
            log "docker0 is gone; restarting dockerd to recreate it"
            "$(dirname "$0")/testenv-down.sh" >&2
        else
            return 0
        fi
    fi
    ensure_packages
    # Already starting (pidfile points at a live dockerd for this socket)? Just wait.
    if pid_is_our_dockerd; then
        DOCKERD_PID=$(cat "$PIDFILE")
        log "dockerd (pid $DOCKERD_PID) is starting; waiting"
    else
        start_dockerd
    fi
    wait_engine
    log "dockerd is up ($(d version --format '{{.Server.Version}}'))"
}

# --- swarm -----------------------------------------------------------------
ensure_swarm() {
    local state control
    if [ "${ASSETD_TEST_NO_SWARM:-0}" = 1 ]; then
        return 0
    fi
    # Right after a dockerd restart the swarm is briefly "pending" / not yet
    # control-available; give it time before deciding it is broken.
    local deadline=$(( $(date +%s) + 20 ))
    while :; do
        state=$(d info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')
        case "$state" in "active true"|inactive*|error*|locked*) break ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.5
    done
    control=${state#* }
    state=${state%% *}
    case "$state" in
        active)
            [ "$control" = true ] && return 0
            die "engine is in a swarm but not a manager; run: docker -H $HOST swarm leave --force"
            ;;
        inactive) ;;
        *)  # pending/error/locked: a throw-away test swarm; rebuild it.
            log "swarm state is '$state'; leaving and re-initialising"
            d swarm leave --force >/dev/null 2>&1 || true
            ;;
    esac
    log "initialising one-node swarm"
    # listen on loopback only: nothing outside this machine should join.
    d swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
}

# --- images ----------------------------------------------------------------
images_ok() {
    local out
    # One inspect for all images; the comment carries the recipe revision.
    out=$(d image inspect --format '{{.Comment}}' "${IMAGES[@]}" 2>/dev/null) || return 1
    [ "$(printf '%s\n' "$out" | grep -c "^assetd-test rev=$IMAGE_REV\$")" -eq 2 ]
}

# The image has no libc, so busybox must be statically linked (ldd fails on
# static binaries with "not a dynamic executable").
busybox_path() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then echo "$b"; return 0; fi
    done
    return 1
}

import_image() {
    local tag=$1 version=$2 bb rootfs a old
    bb=$(busybox_path) || die "no statically linked busybox found (apt-get install busybox-static)"
    rootfs=$(mktemp -d /tmp/assetd-test-rootfs.XXXXXX)
    TMPDIRS="$TMPDIRS $rootfs"
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,www,proc,sys,dev,var/tmp}
    chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
    cp "$bb" "$rootfs/bin/busybox"
    # Every applet as a symlink at its usual path (sh, sleep, httpd, nc, wget, env, ...).
    for a in $("$bb" --list-full); do
        [ -e "$rootfs/$a" ] || ln -s /bin/busybox "$rootfs/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    # The content that differs between :1 and :2 (so the image IDs differ).
    echo "$version" >"$rootfs/etc/assetd-test-version"
    echo "assetd-test/busybox:$version" >"$rootfs/www/index.html"
    old=$(d image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    log "importing $tag"
    # WORKDIR /www: a bare `httpd -f -p 80` serves index.html.
    # Default command sleeps forever but exits on SIGTERM: a plain
    # `sleep infinity` as PID 1 ignores SIGTERM, so every `docker stop` and
    # swarm task shutdown would wait the full 10 s grace period.
    tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
        d import -m "assetd-test rev=$IMAGE_REV" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'WORKDIR /www' \
            --change "CMD [\"sh\",\"-c\",\"trap 'exit 0' TERM INT; sleep infinity & wait\"]" \
            - "$tag" >/dev/null
    rm -rf "$rootfs"
    # Drop the image this one replaces (older recipe), unless still in use.
    [ -z "$old" ] || d image rm "$old" >/dev/null 2>&1 || true
}

ensure_images() {
    images_ok && return 0
    ensure_packages     # busybox-static may have gone since the engine started
    import_image assetd-test/busybox:1 1
    import_image assetd-test/busybox:2 2
}

# --- kernel, users ---------------------------------------------------------
# Published ports on Swarm go through the ingress routing mesh, which is
# IPVS: without the module the ingress tests could only probe a task's own
# address, and would prove nothing about `ports`.
ensure_ip_vs() {
    [ -e /proc/net/ip_vs ] && return 0
    if command -v modprobe >/dev/null 2>&1; then
        modprobe ip_vs >&2 || true
    fi
    [ -e /proc/net/ip_vs ] && { log "loaded ip_vs"; return 0; }
    # A kernel with no module tree at all (a micro-VM kernel, as on the CI
    # machines) can never load it: waived, and said so loudly. A kernel
    # that has modules but fails to load ip_vs is still an error.
    if [ ! -d "/lib/modules/$(uname -r)" ] && [ "${ASSETD_TEST_NO_IP_VS:-}" != 0 ]; then
        log "WARNING: kernel $(uname -r) has no loadable modules, so no ip_vs: Swarm ingress ports are NOT tested through the routing mesh (waived; ASSETD_TEST_NO_IP_VS=0 makes this an error)"
        echo "export ASSETD_TEST_NO_IP_VS=1"
        return 0
    fi
    if [ "${ASSETD_TEST_NO_IP_VS:-0}" = 1 ]; then
        log "WARNING: no ip_vs in this kernel (waived by ASSETD_TEST_NO_IP_VS=1): Swarm ingress ports are NOT tested"
        return 0
    fi
    die "the ip_vs kernel module is not loaded and \`modprobe ip_vs\` cannot load it (kernel $(uname -r)): Swarm ingress ports cannot be tested; set ASSETD_TEST_NO_IP_VS=1 to run without that test"
}

# tests/cli.rs gives a manifest file to another user and expects it
# refused; the user must exist (the test fails without it).
OTHER_USER=assetd-test-other
ensure_test_user() {
    id -u "$OTHER_USER" >/dev/null 2>&1 && return 0
    log "creating user $OTHER_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OTHER_USER" >&2 \
        || id -u "$OTHER_USER" >/dev/null 2>&1 \
        || die "cannot create the user $OTHER_USER"
}

# --- private registry --------------------------------------------------------
REGISTRY=127.0.0.1:5599
REGISTRY_DIR=/var/lib/assetd-test/registry
REGISTRY_USER=assetd
REGISTRY_PASSWORD=assetd-test-password
# The client config the tests use (never ~/.docker): it holds the login.
CLIENT_CONFIG=/var/lib/assetd-test/docker-client

registry_up() {
    # 401 (auth required) means it is up and enforcing auth.
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/")" = 401 ]
}

ensure_registry() {
    mkdir -p "$REGISTRY_DIR/data" "$CLIENT_CONFIG"
    chmod 700 "$CLIENT_CONFIG"
    if ! registry_up; then
        htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$REGISTRY_DIR/htpasswd" 2>/dev/null
        cat >"$REGISTRY_DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
auth:
  htpasswd:
    realm: assetd-test
    path: $REGISTRY_DIR/htpasswd
CONF
        log "starting the test registry on $REGISTRY"
        nohup /usr/bin/docker-registry serve "$REGISTRY_DIR/config.yml" \
            >>/var/log/assetd-test-registry.log 2>&1 9>&- &
        local i
        for i in $(seq 1 50); do registry_up && break; sleep 0.2; done
        registry_up || die "the test registry did not come up on $REGISTRY (see /var/log/assetd-test-registry.log)"
    fi
    printf '%s' "$REGISTRY_PASSWORD" | "$DOCKER_BIN" --config "$CLIENT_CONFIG" -H "$HOST" \
        login -u "$REGISTRY_USER" --password-stdin "$REGISTRY" >/dev/null 2>&1 \
        || die "docker login $REGISTRY failed"
    local image
    for image in "${IMAGES[@]}"; do
        d tag "$image" "$REGISTRY/$image"
        "$DOCKER_BIN" --config "$CLIENT_CONFIG" -H "$HOST" push "$REGISTRY/$image" >/dev/null \
            || die "pushing $REGISTRY/$image failed"
    done
}

# --- axe-core ----------------------------------------------------------------
# The accessibility checker tests/dashboard.rs injects into the page.
AXE_DIR=/var/lib/assetd-test/axe
AXE=$AXE_DIR/node_modules/axe-core/axe.min.js
ensure_axe() {
    [ -s "$AXE" ] && return 0
    log "installing axe-core from the npm registry"
    mkdir -p "$AXE_DIR"
    npm install --prefix "$AXE_DIR" --no-audit --no-fund --loglevel=error axe-core@4 >&2 \
        || die "npm install axe-core failed"
    [ -s "$AXE" ] || die "axe-core installed, but $AXE is missing"
}

# --- main ------------------------------------------------------------------
# Serialise concurrent callers (e.g. parallel test binaries); fd 9 is closed
# for dockerd above so the daemon does not keep holding the lock.
mkdir -p "$(dirname "$SOCK")"
exec 9>"$(dirname "$SOCK")/testenv.lock"
flock 9
ensure_packages
ensure_ip_vs
ensure_test_user
ensure_engine
ensure_swarm
ensure_images
ensure_registry
ensure_axe
echo "export DOCKER_HOST=$HOST"
echo "export ASSETD_TEST_REGISTRY=$REGISTRY"
echo "export ASSETD_TEST_DOCKER_CONFIG=$CLIENT_CONFIG"
echo "export ASSETD_TEST_AXE=$AXE"
