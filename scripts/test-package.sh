#!/usr/bin/env bash
# The packaging and monitoring stage of the suite: the Debian package, the
# man pages, the completions, the unit as installed, the alert rules and
# the Grafana dashboard, each judged by the real tool.
#
#   scripts/test-package.sh
#   ASSETD_BINARY=target/debug/assetd scripts/test-package.sh   # package that binary (no release build)
#
#  1. builds the .deb (scripts/package.sh) and compares `dpkg-deb -c` with
#     the exact list of files, modes and owners;
#  2. lintian: no error, no warning that debian/lintian-overrides does not
#     override;
#  3. dpkg -i; assetd --version; `man -l` of every page (renders, no
#     warning); bash completes `assetd st` to `status`; systemd-analyze
#     verify of the installed unit;
#  4. promtool check rules and test rules;
#  5. a Prometheus server on a loopback port scrapes a daemon (the
#     installed binary, local strategy, its own directories and instance)
#     and loads the installed alert rules: every dashboard query and every
#     alert expression is evaluated through its HTTP API without error,
#     every rule evaluates, and every metric they name exists in the scrape;
#  6. dpkg -r keeps the state and the manifests; dpkg -P removes the state.
#
# It installs and purges the package on this machine, so it refuses to run
# where assetd is installed (or /etc/assetd, /var/lib/assetd exist).
# Everything it starts is stopped on exit, also on failure.
set -euo pipefail
# A binary named relative to where the caller stands.
if [ -n "${ASSETD_BINARY:-}" ]; then ASSETD_BINARY=$(realpath "$ASSETD_BINARY"); export ASSETD_BINARY; fi
cd "$(dirname "$0")/.."

# Debian's packages this stage runs; installed when missing.
PACKAGES=(lintian prometheus man-db bash-completion dpkg-dev binutils jq curl)
# Seconds to wait for the daemon, Prometheus and the first rule evaluation.
DEADLINE=${ASSETD_PACKAGE_TEST_DEADLINE:-90}

log() { printf 'test-package.sh: %s\n' "$*" >&2; }
fail() { printf 'test-package.sh: FAIL: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == *"ok installed"* ]] || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# dpkg ARGS... > LOG: as dpkg, waiting (up to a minute) while another
# dpkg or apt holds the lock rather than failing on it.
dpkg_waiting() {
    local out i
    for i in $(seq 1 60); do
        if out=$(dpkg "$@" 2>&1); then printf '%s\n' "$out"; return 0; fi
        grep -qi 'lock' <<<"$out" || { printf '%s\n' "$out"; return 1; }
        sleep 1
    done
    printf '%s\n' "$out"
    return 1
}

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, the test engine)"
case "$(dpkg-query -W -f='${Status}' assetd 2>/dev/null || true)" in
    "" | *not-installed) ;;
    *) fail "the package assetd is installed here; this stage installs and purges it (remove it first: dpkg -P assetd)" ;;
esac
for path in /etc/assetd /var/lib/assetd /usr/bin/assetd; do
    [ ! -e "$path" ] || fail "$path exists; this stage installs and purges the package and would touch it"
done

ensure_packages
. scripts/load-env.sh
load_env scripts/testenv.sh
export DOCKER_HOST

work=$(mktemp -d /tmp/assetd-package-test.XXXXXX)
instance=pkgtest-$$
daemon_pid=""
prometheus_pid=""
installed=0
made_manifest=""

cleanup() {
    local status=$?
    set +e
    [ -z "$daemon_pid" ] || { kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; }
    [ -z "$prometheus_pid" ] || { kill "$prometheus_pid" 2>/dev/null; wait "$prometheus_pid" 2>/dev/null; }
    # What the daemon deployed (only its own instance's).
    local ids
    ids=$(docker ps -aq --filter "label=io.assetd.instance=$instance" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1
    if [ "$installed" = 1 ] && ! dpkg_waiting -P assetd >"$work/cleanup-dpkg"; then
        log "cleanup: dpkg -P assetd failed; remove the package by hand:"
        cat "$work/cleanup-dpkg" >&2
        status=1
    fi
    if [ -n "$made_manifest" ]; then
        rm -f "$made_manifest"
        rmdir /etc/assetd/manifests /etc/assetd 2>/dev/null
    fi
    if [ "$status" != 0 ]; then
        for f in "$work"/daemon.log "$work"/prometheus.log; do
            [ -s "$f" ] && { log "tail of $f:"; tail -n 20 "$f" >&2; }
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)

# --- 1. build, contents ---------------------------------------------------
log "building the package"
deb=$(scripts/package.sh) || fail "scripts/package.sh"
[ -f "$deb" ] || fail "scripts/package.sh did not make $deb"
binary=${ASSETD_BINARY:-target/release/assetd}

# One page per command: the visible subcommands that --help lists, nested
# ones too (`assetd secret encrypt`: assetd-secret-encrypt.1), `help` aside.
subcommands() { # WORDS...: the subcommands of `assetd WORDS...`, as page names
    local sub prefix
    prefix=$(IFS=-; echo "$*")
    for sub in $("$binary" "$@" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF && $1 != "help" { print $1 }'); do
        echo "$prefix${prefix:+-}$sub"
        subcommands "$@" "$sub"
    done
}
commands=$(subcommands)
[ -n "$commands" ] || fail "no commands in \`$binary --help\`"
{
    cat <<'EOF'
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/assetd/
-rw------- root/root ./etc/assetd/assetd.env
drwxr-xr-x root/root ./etc/assetd/manifests/
drwxr-xr-x root/root ./lib/
drwxr-xr-x root/root ./lib/systemd/
drwxr-xr-x root/root ./lib/systemd/system/
-rw-r--r-- root/root ./lib/systemd/system/assetd.service
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/assetd
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/assetd/
-rw-r--r-- root/root ./usr/share/assetd/assetd.schema.json
-rw-r--r-- root/root ./usr/share/assetd/compose.schema.json
drwxr-xr-x root/root ./usr/share/assetd/grafana/
-rw-r--r-- root/root ./usr/share/assetd/grafana/assetd.json
-rw-r--r-- root/root ./usr/share/assetd/openfactory.schema.json
drwxr-xr-x root/root ./usr/share/assetd/prometheus/
-rw-r--r-- root/root ./usr/share/assetd/prometheus/assetd-alerts.yml
drwxr-xr-x root/root ./usr/share/bash-completion/
drwxr-xr-x root/root ./usr/share/bash-completion/completions/
-rw-r--r-- root/root ./usr/share/bash-completion/completions/assetd
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/assetd/
-rw-r--r-- root/root ./usr/share/doc/assetd/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/assetd/copyright
drwxr-xr-x root/root ./usr/share/fish/
drwxr-xr-x root/root ./usr/share/fish/vendor_completions.d/
-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/assetd.fish
drwxr-xr-x root/root ./usr/share/lintian/
drwxr-xr-x root/root ./usr/share/lintian/overrides/
-rw-r--r-- root/root ./usr/share/lintian/overrides/assetd
drwxr-xr-x root/root ./usr/share/man/
drwxr-xr-x root/root ./usr/share/man/man1/
-rw-r--r-- root/root ./usr/share/man/man1/assetd.1.gz
drwxr-xr-x root/root ./usr/share/zsh/
drwxr-xr-x root/root ./usr/share/zsh/vendor-completions/
-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_assetd
drwxr-xr-x root/root ./var/
drwxr-xr-x root/root ./var/lib/
drwx------ root/root ./var/lib/assetd/
EOF
    for c in $commands; do
        echo "-rw-r--r-- root/root ./usr/share/man/man1/assetd-$c.1.gz"
    done
} | LC_ALL=C sort -k3 >"$work/expected"
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | LC_ALL=C sort -k3 >"$work/actual"
diff -u "$work/expected" "$work/actual" >&2 || fail "dpkg-deb -c $deb differs from the expected contents (- expected, + in the package)"

# --- 2. lintian -------------------------------------------------------------
log "lintian"
# Overridden tags do not count; the overrides ship in the package.
lintian --fail-on error,warning "$deb" >"$work/lintian" 2>&1 || {
    cat "$work/lintian" >&2
    fail "lintian reports errors or warnings that are not overridden (debian/lintian-overrides)"
}
if grep -E '^[EW]: ' "$work/lintian" >&2; then
    fail "lintian reports errors or warnings that are not overridden"
fi

# --- 3. install, run what was installed ------------------------------------
log "dpkg -i"
installed=1
dpkg_waiting -i "$deb" >"$work/dpkg-i" || { cat "$work/dpkg-i" >&2; fail "dpkg -i $deb"; }
version=$(dpkg-deb -f "$deb" Version)
[ "$(/usr/bin/assetd --version)" = "assetd ${version//\~/-}" ] \
    || fail "assetd --version says '$(/usr/bin/assetd --version)', the package is $version"
[ "$(stat -c %a /var/lib/assetd)" = 700 ] || fail "/var/lib/assetd is not 0700 after install"
[ "$(stat -c %a /etc/assetd/assetd.env)" = 600 ] || fail "/etc/assetd/assetd.env is not 0600 after install"

log "man pages"
pages=0
for page in /usr/share/man/man1/assetd*.1.gz; do
    MANWIDTH=80 man --warnings -l "$page" >"$work/man.out" 2>"$work/man.err" || fail "man -l $page exits non-zero"
    [ ! -s "$work/man.err" ] || { cat "$work/man.err" >&2; fail "man -l $page warns"; }
    [ -s "$work/man.out" ] || fail "man -l $page renders nothing"
    pages=$((pages + 1))
done
[ "$pages" -gt 1 ] || fail "only $pages man page(s) installed"

log "bash completion"
# As bash does on TAB: the function the installed file registers, with
# the words of `assetd st`.
reply=$(bash -c '
    set -u
    . /usr/share/bash-completion/bash_completion
    . /usr/share/bash-completion/completions/assetd
    fn=$(complete -p assetd | sed -n "s/.*-F \([^ ]*\).*/\1/p")
    [ -n "$fn" ] || { echo "no completion function registered for assetd" >&2; exit 1; }
    COMP_WORDS=(assetd st); COMP_CWORD=1
    COMP_LINE="assetd st"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$fn" assetd st assetd
    printf "%s\n" "${COMPREPLY[@]}"
') || fail "the bash completion function failed"
[ "$(echo "$reply" | sed 's/ *$//')" = status ] || fail "bash completes \`assetd st\` to '$reply', not 'status'"

log "systemd-analyze verify"
verify=$(systemd-analyze verify /lib/systemd/system/assetd.service 2>&1) \
    || fail "systemd-analyze verify /lib/systemd/system/assetd.service: $verify"
# verify also reports on other units it loads; only ours must be clean.
if grep assetd <<<"$verify" >&2; then fail "systemd-analyze verify complains about the installed unit"; fi
exposure=$(systemd-analyze security --offline=yes /lib/systemd/system/assetd.service 2>/dev/null \
    | sed -n 's/.*Overall exposure level for assetd.service: \([0-9.]*\).*/\1/p')
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e < 4.0) }' \
    || fail "systemd-analyze security rates the installed unit '$exposure', not below 4.0"

# --- 4. promtool --------------------------------------------------------------
log "promtool"
promtool check rules prometheus/assetd-alerts.yml >"$work/promtool" 2>&1 \
    || { cat "$work/promtool" >&2; fail "promtool check rules prometheus/assetd-alerts.yml"; }
(cd prometheus && promtool test rules assetd-alerts.test.yml) >"$work/promtool" 2>&1 \
    || { cat "$work/promtool" >&2; fail "promtool test rules prometheus/assetd-alerts.test.yml"; }
cmp -s prometheus/assetd-alerts.yml /usr/share/assetd/prometheus/assetd-alerts.yml \
    || fail "the installed alert rules differ from prometheus/assetd-alerts.yml"

# --- 5. a real Prometheus scrapes a real daemon -------------------------------
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        # A refused connection: nothing listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    fail "no free loopback port found"
}
metrics_port=$(free_port)
prometheus_port=$(free_port)
[ "$metrics_port" != "$prometheus_port" ] || prometheus_port=$(free_port)

# One asset that runs, one that fails (its image is absent and may not be
# pulled): the fleet, action, failure and error series all have samples.
mkdir -m 0700 "$work/manifests" "$work/state"
cat >"$work/manifests/assets.yaml" <<EOF
apiVersion: assetd/v1
kind: Asset
metadata: { name: $instance-ok }
spec:
  image: assetd-test/busybox:1
---
apiVersion: assetd/v1
kind: Asset
metadata: { name: $instance-failing }
spec:
  image: assetd-test/absent:1
  pullPolicy: Never
EOF
log "starting assetd on 127.0.0.1:$metrics_port (instance $instance)"
/usr/bin/assetd run --strategy local --instance "$instance" \
    --manifests "$work/manifests" --state-dir "$work/state" \
    --listen "127.0.0.1:$metrics_port" --resync 2s >"$work/daemon.log" 2>&1 &
daemon_pid=$!

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [/usr/share/assetd/prometheus/assetd-alerts.yml]
scrape_configs:
  - job_name: assetd
    static_configs: [{ targets: ["127.0.0.1:$metrics_port"] }]
EOF
log "starting prometheus on 127.0.0.1:$prometheus_port"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
api=http://127.0.0.1:$prometheus_port/api/v1

alive() { kill -0 "$1" 2>/dev/null; }
# query EXPR: the API's JSON answer, or a failure naming the query.
query() {
    curl -sS --max-time 10 --get --data-urlencode "query=$1" "$api/query" 2>&1
}

# The queries to judge: every dashboard target, every alert expression.
jq -r '.. | objects | select(has("expr")) | .expr' grafana/assetd.json >"$work/dashboard.exprs"
[ -s "$work/dashboard.exprs" ] || fail "no queries found in grafana/assetd.json"
# Grafana's variables, as an "All" selection over this scrape.
sed -e 's/\$__rate_interval/30s/g' -e 's/\$__interval/5s/g' -e 's/\$__range/5m/g' \
    -e 's/\$job/.+/g' -e 's/\$instance/.+/g' "$work/dashboard.exprs" >"$work/dashboard.queries"
if grep -n '\$' "$work/dashboard.queries" >&2; then fail "grafana/assetd.json uses a variable this stage does not know"; fi
alert_count=$(grep -c '^ *- alert:' prometheus/assetd-alerts.yml)

# Every metric the dashboard (its panels and its variables) and the rules
# name: these must all be in the scrape.
{
    cat "$work/dashboard.exprs"
    jq -r '.templating.list[] | .query | if type == "object" then .query else . end | strings' grafana/assetd.json
    # The rules' expressions: `expr:` to the next key of the rule.
    awk '/^ *expr:/ { sub(/^ *expr: *(>-)? */, ""); print; in_expr = 1; next }
         /^ *(for|labels|annotations):/ { in_expr = 0 }
         in_expr && !/^ *#/ { print }' prometheus/assetd-alerts.yml
} | grep -oE '\b(assetd_[a-z_]+|up)\b' | LC_ALL=C sort -u >"$work/metrics.named"

log "waiting for the scrape"
deadline=$(( $(date +%s) + DEADLINE ))
while :; do
    alive "$daemon_pid" || fail "assetd run exited (see its log above)"
    alive "$prometheus_pid" || fail "prometheus exited (see its log above)"
    names=$(curl -sS --max-time 5 "$api/label/__name__/values" 2>/dev/null | jq -r '.data[]?' 2>/dev/null || true)
    missing=$(LC_ALL=C comm -23 "$work/metrics.named" <(LC_ALL=C sort -u <<<"$names"))
    evaluated=$(curl -sS --max-time 5 "$api/rules" 2>/dev/null \
        | jq '[.data.groups[]?.rules[]? | select(.health != "unknown")] | length' 2>/dev/null || echo 0)
    [ -z "$missing" ] || [ "$(date +%s)" -lt "$deadline" ] \
        || fail "metrics named by the dashboard or the rules are not in the scrape after ${DEADLINE}s: $(tr '\n' ' ' <<<"$missing")"
    [ "$evaluated" -ge "$alert_count" ] || [ "$(date +%s)" -lt "$deadline" ] \
        || fail "Prometheus evaluated $evaluated of $alert_count alert rules within ${DEADLINE}s"
    [ -z "$missing" ] && [ "$evaluated" -ge "$alert_count" ] && break
    sleep 1
done
curl -sS --max-time 5 "http://127.0.0.1:$metrics_port/readyz" | grep -q ready || fail "assetd is not ready (/readyz)"

log "evaluating $(wc -l <"$work/dashboard.queries") dashboard queries and $alert_count alert rules"
judge() { # WHAT EXPR
    local answer
    answer=$(query "$2")
    jq -e '.status == "success" and ((.warnings // []) | length == 0)' <<<"$answer" >/dev/null 2>&1 \
        || fail "$1 does not evaluate: $2 → $answer"
}
while IFS= read -r expr; do
    judge "dashboard query" "$expr"
done <"$work/dashboard.queries"

rules_json=$(curl -sS --max-time 10 "$api/rules")
loaded=$(jq '[.data.groups[].rules[] | select(.type == "alerting")] | length' <<<"$rules_json")
[ "$loaded" = "$alert_count" ] || fail "Prometheus loaded $loaded alert rules, prometheus/assetd-alerts.yml has $alert_count"
bad=$(jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.health) \(.lastError // "")"' <<<"$rules_json")
[ -z "$bad" ] || fail "alert rules do not evaluate: $bad"
while IFS= read -r expr; do
    judge "alert expression" "$expr"
done < <(jq -r '.data.groups[].rules[].query' <<<"$rules_json")

# Stop what ran before the package goes.
kill "$daemon_pid" "$prometheus_pid"
wait "$daemon_pid" 2>/dev/null || true
wait "$prometheus_pid" 2>/dev/null || true
daemon_pid="" prometheus_pid=""

# --- 6. remove keeps, purge deletes -------------------------------------------
log "dpkg -r, dpkg -P"
echo "state of an earlier run" >/var/lib/assetd/kept
made_manifest=/etc/assetd/manifests/kept.yaml
printf 'apiVersion: assetd/v1\nkind: Asset\nmetadata: { name: kept }\nspec: { image: x }\n' >"$made_manifest"
dpkg_waiting -r assetd >"$work/dpkg-r" || { cat "$work/dpkg-r" >&2; fail "dpkg -r assetd"; }
[ ! -e /usr/bin/assetd ] || fail "dpkg -r left /usr/bin/assetd"
[ -f /var/lib/assetd/kept ] || fail "dpkg -r removed the state in /var/lib/assetd"
[ -f "$made_manifest" ] || fail "dpkg -r removed the manifests in /etc/assetd/manifests"
[ -f /etc/assetd/assetd.env ] || fail "dpkg -r removed the conffile /etc/assetd/assetd.env"
dpkg_waiting -P assetd >"$work/dpkg-p" || { cat "$work/dpkg-p" >&2; fail "dpkg -P assetd"; }
installed=0
[ ! -e /var/lib/assetd ] || fail "dpkg -P left /var/lib/assetd"
[ ! -e /etc/assetd/assetd.env ] || fail "dpkg -P left /etc/assetd/assetd.env"
[ -f "$made_manifest" ] || fail "dpkg -P removed the operator's manifests"

log "ok ($(( $(date +%s) - started ))s)"
