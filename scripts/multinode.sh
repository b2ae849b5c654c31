#!/usr/bin/env bash
# A 3-manager Docker Swarm on one machine, for assetd's multi-node tests.
#
#   eval "$(scripts/multinode.sh up)"   # exports ASSETD_MN_HOSTS, ASSETD_MN_ADDRS
#   scripts/multinode.sh status         # `docker node ls` as seen by each node
#   scripts/multinode.sh down           # stop everything, delete all state
#
# Layout (all idempotent):
#   node nX (X=1..3): network namespace assetd-nX, eth0 = 10.213.0.1X/24,
#     a veth to bridge assetd-br0 (10.213.0.1/24) in the host namespace;
#     a dockerd started inside it with nsenter (NOT `ip netns exec`, which
#     remounts /sys and hides the cgroup mounts) and its own UTS namespace
#     so `docker node ls` shows hostnames assetd-n1..3;
#     socket /run/assetd-mn/nX/docker.sock, data /var/lib/assetd-mn/nX,
#     exec root /run/assetd-mn/nX/exec, log /var/log/assetd-mn-nX.log.
#   Swarm: init on n1 (advertise 10.213.0.11), n2/n3 join as managers;
#     node labels zone=nX; test images assetd-test/busybox:1,:2 copied from
#     the scripts/testenv.sh engine.
# Human output goes to stderr; `up` prints only `export` lines on stdout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES="1 2 3"
BRIDGE=assetd-br0
BRIDGE_ADDR=10.213.0.1/24
SUBNET_PREFIX=10.213.0.1            # node X gets ${SUBNET_PREFIX}X = 10.213.0.1X
RUN_BASE=/run/assetd-mn
DATA_BASE=/var/lib/assetd-mn
MAIN_HOST=unix:///run/assetd-test/docker.sock
IMAGES=(assetd-test/busybox:1 assetd-test/busybox:2)
START_DEADLINE=${ASSETD_MN_START_DEADLINE:-60}
STOP_DEADLINE=${ASSETD_MN_STOP_GRACE:-5}
declare -A STARTED_PID=()
FWD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT)

# Under pipefail, `cmd | grep -q` fails at random when grep exits at its
# match while cmd is still writing (cmd dies of SIGPIPE): `ip addr show`,
# which writes in pieces, lost that race about 1 time in 5 here, and
# `up` then re-added an address it had ("ipv4: Address already assigned").
# So: idempotent `ip ... replace`, and grep on captured text only.

log() { printf 'multinode: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

if [ -x /usr/bin/docker ]; then DOCKER_BIN=/usr/bin/docker; else DOCKER_BIN=docker; fi

ns()      { echo "assetd-n$1"; }
addr()    { echo "${SUBNET_PREFIX}$1"; }
sock()    { echo "$RUN_BASE/n$1/docker.sock"; }
host()    { echo "unix://$(sock "$1")"; }
pidfile() { echo "$RUN_BASE/n$1/docker.pid"; }
logf()    { echo "/var/log/assetd-mn-n$1.log"; }
veth()    { echo "assetd-n$1h"; }     # host end; the namespace end is eth0
dn()      { local n=$1; shift; "$DOCKER_BIN" -H "$(host "$n")" "$@"; }
node_up() { dn "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Alive and not a zombie (an unreaped zombie still passes `kill -0`).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ if ($3 == "Z") exit 0; exit 1 }' "/proc/$1/stat" 2>/dev/null; }

# Only trust a pidfile that points at a dockerd serving this node's socket.
node_pid() {
    local pf pid cmdline
    pf=$(pidfile "$1")
    [ -s "$pf" ] || return 1
    pid=$(cat "$pf")
    cmdline=$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    grep -q "dockerd.*$(sock "$1")" <<<"$cmdline" || return 1
    echo "$pid"
}

# --- network ---------------------------------------------------------------
net_up() {
    local n nsn v
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$BRIDGE_ADDR" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The host dockerd sets the FORWARD policy to DROP, and with br_netfilter
    # bridged frames traverse FORWARD too: let node<->node traffic through.
    iptables -C "${FWD_RULE[@]}" 2>/dev/null || iptables -I "${FWD_RULE[@]}"
    for n in $NODES; do
        nsn=$(ns "$n"); v=$(veth "$n")
        [ -e "/var/run/netns/$nsn" ] || ip netns add "$nsn"
        ip -n "$nsn" link set lo up
        if ! ip -n "$nsn" link show eth0 >/dev/null 2>&1; then
            ip link del "$v" 2>/dev/null || true     # half-made pair from an earlier run
            ip link add "$v" type veth peer name "assetd-n${n}p"
            ip link set "assetd-n${n}p" netns "$nsn"
            ip -n "$nsn" link set "assetd-n${n}p" name eth0
        fi
        ip link set "$v" master "$BRIDGE" up
        ip -n "$nsn" addr replace "$(addr "$n")/24" dev eth0
        ip -n "$nsn" link set eth0 up
        # Route everything else via the host bridge (nothing is NATed out;
        # this only gives the engine a default-route interface).
        ip -n "$nsn" route replace default via "${BRIDGE_ADDR%/*}"
    done
}

net_down() {
    local n
    for n in $NODES; do
        # Deleting the namespace also destroys eth0 and so the whole veth pair.
        if [ -e "/var/run/netns/$(ns "$n")" ]; then ip netns del "$(ns "$n")"; fi
        if ip link show "$(veth "$n")" >/dev/null 2>&1; then ip link del "$(veth "$n")"; fi
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
    while iptables -C "${FWD_RULE[@]}" 2>/dev/null; do iptables -D "${FWD_RULE[@]}"; done
}

# --- dockerds --------------------------------------------------------------
start_node() {
    local n=$1 dockerd_bin
    dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
    mkdir -p "$RUN_BASE/n$n/exec" "$DATA_BASE/n$n"
    rm -f "$(pidfile "$n")"
    # Own daemon.json: isolates the node from /etc/docker/daemon.json and
    # gives it its own trust key, hence its own engine ID (the default
    # /etc/docker/key.json would be shared by all engines on this machine).
    # insecure-registries: the test registry's bridge address (plain HTTP,
    # like loopback; see registry_up below).
    printf '{\n  "deprecated-key-path": "%s",\n  "insecure-registries": ["%s"]\n}\n' \
        "$DATA_BASE/n$n/key.json" "$NODE_REGISTRY" >"$DATA_BASE/n$n/daemon.json"
    log "starting dockerd n$n (log: $(logf "$n"))"
    printf '\n===== %s multinode.sh starting dockerd n%s =====\n' "$(date -Is)" "$n" >>"$(logf "$n")"
    # nsenter --net: join the node's namespace but keep the host's mounts.
    # unshare --uts + hostname: a distinct node hostname in `docker node ls`.
    # --cgroup-parent: per-node cgroup, so each node's containers can be told apart.
    # How tasks get their image. n1, n2: DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1,
    # the local copy, no registry. n3 (PULLING_NODE) pulls at every task
    # start, as a real fleet does, so a task there pulls from the private
    # registry with the login its service carries; a pull from anywhere
    # but the test registry fails at once through a dead proxy (nothing
    # listens on the namespace's loopback; without it a public pull waits
    # 20 s for DNS), and the local test images are used.
    local pulls=(DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1)
    if [ "$n" = "$PULLING_NODE" ]; then
        pulls=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY="${NODE_REGISTRY%:*}")
    fi
    # shellcheck disable=SC2016  # $0/$@ are for the inner sh
    env "${pulls[@]}" \
    setsid nohup nsenter --net="/var/run/netns/$(ns "$n")" \
        unshare --uts \
        sh -c 'hostname "$0" && exec "$@"' "assetd-n$n" \
        "$dockerd_bin" \
            --host "$(host "$n")" \
            --data-root "$DATA_BASE/n$n" \
            --exec-root "$RUN_BASE/n$n/exec" \
            --pidfile "$(pidfile "$n")" \
            --config-file "$DATA_BASE/n$n/daemon.json" \
            --cgroup-parent "/assetd-mn-n$n" \
        </dev/null >>"$(logf "$n")" 2>&1 9>&- &
    # env/setsid/nohup/nsenter/unshare/sh all exec in place: $! is the dockerd.
    STARTED_PID[$n]=$!
}

wait_node() {
    local n=$1 deadline=$(( $(date +%s) + START_DEADLINE ))
    until node_up "$n"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "dockerd n$n did not answer within ${START_DEADLINE}s; log tail:"
            tail -n 30 "$(logf "$n")" >&2 || true
            exit 1
        fi
        if [ -n "${STARTED_PID[$n]:-}" ] && ! alive "${STARTED_PID[$n]}"; then
            log "dockerd n$n exited during startup; log tail:"
            tail -n 30 "$(logf "$n")" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

nodes_up() {
    local n started=""
    for n in $NODES; do
        node_up "$n" && continue
        node_pid "$n" >/dev/null || { start_node "$n"; started="$started $n"; }
    done
    for n in $NODES; do wait_node "$n"; done
    [ -z "$started" ] || log "dockerd up on:$started"
}

# All PIDs whose command line mentions this node's run dir (dockerd,
# its containerd and shims) - used only when SIGTERM was not enough.
node_procs() {
    local p cmdline
    for p in /proc/[0-9]*; do
        # (processes may vanish mid-scan: silence the redirection error too)
        cmdline=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        [[ "$cmdline" == *"$RUN_BASE/n$1/"* ]] && echo "${p#/proc/}"
    done
    return 0
}

# Stop all nodes at once. `down` throws all state away, so no need to wait
# the 10 s per container that a graceful dockerd shutdown can take (PID-1
# commands like `sleep` ignore SIGTERM): short grace, then SIGKILL.
stop_nodes() {
    local n pid pids="" deadline p cg
    for n in $NODES; do
        if pid=$(node_pid "$n"); then
            log "stopping dockerd n$n (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids="$pids $pid"
        fi
    done
    deadline=$(( $(date +%s) + STOP_DEADLINE ))
    for pid in $pids; do
        while alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    done
    # Leftovers (dockerd still busy, or SIGKILLed earlier): dockerd,
    # containerd, shims, and container processes in the nodes' cgroups.
    for n in $NODES; do
        for p in $(node_procs "$n"); do kill -KILL "$p" 2>/dev/null || true; done
        for cg in /sys/fs/cgroup/*/assetd-mn-n"$n"; do
            [ -d "$cg" ] || continue
            find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
                kill -KILL "$p" 2>/dev/null || true
            done
        done
    done
    deadline=$(( $(date +%s) + 10 ))
    for pid in $pids; do
        while alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
    done
    for n in $NODES; do rm -f "$(pidfile "$n")"; done
}

# Remove the per-node cgroups (only empty dirs; rmdir depth first).
cgroups_down() {
    local n d
    for n in $NODES; do
        for d in /sys/fs/cgroup/*/assetd-mn-n"$n"; do
            [ -d "$d" ] || continue
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    done
}

# Unmount everything below our dirs (overlay layers, shm, nsfs bind mounts
# of network sandboxes, dockerd's private bind of its data root), deepest first.
unmount_all() {
    local m
    for _ in 1 2 3; do
        m=$(findmnt -rn -o TARGET | grep -E "^($DATA_BASE|$RUN_BASE)(/|$)" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-) || true
        [ -n "$m" ] || return 0
        while read -r t; do umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null || true; done <<<"$m"
    done
    findmnt -rn -o TARGET | grep -E "^($DATA_BASE|$RUN_BASE)(/|$)" >&2 && die "could not unmount the above"
    return 0
}

# --- swarm -----------------------------------------------------------------
swarm_state() { dn "$1" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'; }

# Swarm state of a node once it has settled: a just-(re)started manager is
# briefly "pending" / not yet control-available while it reconnects to the
# cluster; re-joining it then would needlessly throw its state away.
settled_state() {
    local n=$1 st deadline=$(( $(date +%s) + 20 ))
    while :; do
        st=$(swarm_state "$n")
        case "$st" in
            "active true"|inactive*|error*|locked*) break ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.5
    done
    echo "$st"
}

swarm_up() {
    local n st mgr="" tok
    # Any node that is already a working manager anchors the cluster
    # (e.g. after a node was restarted); otherwise start one on n1.
    for n in $NODES; do
        [ "$(settled_state "$n")" = "active true" ] && { mgr=$n; break; }
    done
    if [ -z "$mgr" ]; then
        st=$(swarm_state 1)
        [ "${st%% *}" = inactive ] || dn 1 swarm leave --force >/dev/null 2>&1 || true
        log "swarm init on n1 ($(addr 1))"
        dn 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" >/dev/null
        mgr=1
    fi
    tok=$(dn "$mgr" swarm join-token -q manager)
    for n in $NODES; do
        st=$(settled_state "$n")
        case "$st" in
            "active true") continue ;;
            inactive*) ;;
            *)  log "n$n swarm state '$st'; leaving before re-joining"
                dn "$n" swarm leave --force >/dev/null 2>&1 || true ;;
        esac
        log "n$n joining as manager via n$mgr"
        dn "$n" swarm join --token "$tok" --advertise-addr "$(addr "$n")" \
            --listen-addr "$(addr "$n"):2377" "$(addr "$mgr"):2377" >/dev/null
    done
    # Node labels zone=nX (the node ID comes from the node's own engine).
    for n in $NODES; do
        # A node update is a read-modify-write: retry when it lost a
        # version race ("update out of sequence").
        id=$(dn "$n" info --format '{{.Swarm.NodeID}}')
        for try in 1 2 3 4 5 6 7 8 9 10; do
            if err=$(dn "$mgr" node update --label-add "zone=n$n" "$id" 2>&1 >/dev/null); then break; fi
            case "$err" in *"out of sequence"*) [ "$try" -lt 10 ] && { sleep 0.2; continue; } ;; esac
            die "labelling n$n: $err"
        done
    done
    wait_ready "$mgr"
}

# All three managers Ready and reachable, with a leader.
wait_ready() {
    local mgr=$1 deadline=$(( $(date +%s) + START_DEADLINE )) out
    while :; do
        out=$(dn "$mgr" node ls --format '{{.Status}} {{.ManagerStatus}}' 2>/dev/null || true)
        if [ "$(grep -cE '^Ready (Leader|Reachable)$' <<<"$out")" -eq 3 ] && grep -q Leader <<<"$out"; then
            return 0
        fi
        [ "$(date +%s)" -lt "$deadline" ] || { log "swarm not ready:"; printf '%s\n' "$out" >&2; exit 1; }
        sleep 0.5
    done
}

# --- images ----------------------------------------------------------------
images_up() {
    local n want have
    want=$("$DOCKER_BIN" -H "$MAIN_HOST" image inspect --format '{{.Id}}' "${IMAGES[@]}")
    for n in $NODES; do
        have=$(dn "$n" image inspect --format '{{.Id}}' "${IMAGES[@]}" 2>/dev/null || true)
        [ "$have" = "$want" ] && continue
        log "loading test images into n$n"
        "$DOCKER_BIN" -H "$MAIN_HOST" save "${IMAGES[@]}" | dn "$n" load -q >/dev/null
    done
}

# --- the private registry, for the nodes -----------------------------------
# The test registry (scripts/testenv.sh, 127.0.0.1:5599) serves loopback
# only; the nodes reach the host at the bridge address, so a second server
# of the same storage and htpasswd listens there (and nowhere else). Tests
# push through loopback and the nodes pull through the bridge.
NODE_REGISTRY=${BRIDGE_ADDR%/*}:5598
# The node whose tasks pull (see start_node).
PULLING_NODE=3
REGISTRY_DIR=/var/lib/assetd-test/registry
NODE_REGISTRY_CONFIG=$REGISTRY_DIR/config-nodes.yml

node_registry_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE_REGISTRY/v2/")" = 401 ]
}

node_registry_up() {
    node_registry_answers && return 0
    [ -f "$REGISTRY_DIR/config.yml" ] || die "no $REGISTRY_DIR/config.yml: scripts/testenv.sh starts the test registry"
    sed "s|^  addr: .*|  addr: $NODE_REGISTRY|" "$REGISTRY_DIR/config.yml" >"$NODE_REGISTRY_CONFIG"
    log "serving the test registry to the nodes on $NODE_REGISTRY"
    nohup /usr/bin/docker-registry serve "$NODE_REGISTRY_CONFIG" \
        >>/var/log/assetd-test-registry-nodes.log 2>&1 9>&- &
    local i
    for i in $(seq 1 50); do node_registry_answers && return 0; sleep 0.2; done
    die "the nodes' registry did not come up on $NODE_REGISTRY (see /var/log/assetd-test-registry-nodes.log)"
}

node_registry_down() {
    pkill -f "docker-registry serve $NODE_REGISTRY_CONFIG" 2>/dev/null || true
}

# --- commands --------------------------------------------------------------
hosts_csv() { local n out=""; for n in $NODES; do out="$out${out:+,}$(host "$n")"; done; echo "$out"; }
addrs_csv() { local n out=""; for n in $NODES; do out="$out${out:+,}$(addr "$n")"; done; echo "$out"; }

cmd_up() {
    if ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null; then
        die "need util-linux (nsenter, unshare)"
    fi
    # Main engine first: it installs docker and holds the images to copy.
    "$SCRIPT_DIR/testenv.sh" >/dev/null
    net_up
    node_registry_up
    nodes_up
    swarm_up
    images_up
    echo "export ASSETD_MN_HOSTS=$(hosts_csv)"
    echo "export ASSETD_MN_ADDRS=$(addrs_csv)"
    echo "export ASSETD_MN_REGISTRY=$NODE_REGISTRY"
}

cmd_down() {
    stop_nodes
    node_registry_down
    unmount_all
    cgroups_down
    net_down
    # --one-file-system: never delete through a mount we failed to remove.
    rm -rf --one-file-system "$DATA_BASE" "$RUN_BASE"
    log "down"
}

cmd_status() {
    local n
    for n in $NODES; do
        echo "== n$n $(host "$n") ($(addr "$n"))"
        if node_up "$n"; then
            dn "$n" node ls 2>&1 || true
        else
            echo "(engine not answering)"
        fi
    done
}

case "${1:-}" in
    up|down|status)
        # Serialise concurrent callers; dockerd gets fd 9 closed (see start_node).
        exec 9>"$RUN_BASE.lock"
        flock 9
        "cmd_$1" ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
