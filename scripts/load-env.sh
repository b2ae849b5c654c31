# Sourced by the test scripts (not run): `load_env CMD ARGS...` runs an
# environment script whose stdout is `export NAME=value` lines
# (scripts/testenv.sh, scripts/multinode.sh up), checks its exit status
# and its output, then evaluates it. `eval "$(CMD)"` alone drops the
# status (`set -e` does not see it), so a failed environment would run
# the suite against whatever DOCKER_HOST happens to be set.
load_env() {
    local out status=0
    out=$("$@") || status=$?
    if [ "$status" != 0 ]; then
        echo "${0##*/}: $* failed (exit $status)" >&2
        exit 1
    fi
    if [ -z "$out" ] || grep -qvE '^export [A-Za-z_][A-Za-z0-9_]*=[^[:space:]]+$' <<<"$out"; then
        printf '%s: %s printed something other than export lines:\n%s\n' "${0##*/}" "$*" "$out" >&2
        exit 1
    fi
    eval "$out"
}
