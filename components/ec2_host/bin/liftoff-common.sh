# shellcheck shell=bash
# Shared by the liftoff-* host scripts (sourced, never executed).
# Paths are overridable so the scripts also run from the repo in tests.

LIFTOFF_CONFIG_DIR="${LIFTOFF_CONFIG_DIR:-/etc/liftoff}"
LIFTOFF_RUN_DIR="${LIFTOFF_RUN_DIR:-/run/liftoff}"
# Not under LIFTOFF_RUN_DIR: systemd deletes the unit's RuntimeDirectory on every
# restart, which would pull a held lock file out from under us.
LIFTOFF_LOCK_FILE="${LIFTOFF_LOCK_FILE:-/run/lock/liftoff.lock}"
LIFTOFF_IMDS_URL="${LIFTOFF_IMDS_URL:-http://169.254.169.254}"
LIFTOFF_HEALTH_POLL_SECONDS="${LIFTOFF_HEALTH_POLL_SECONDS:-2}"
# shellcheck disable=SC2034  # used by the scripts that source this file
LIFTOFF_UNIT="liftoff-app.service"

HOST_ENV="$LIFTOFF_CONFIG_DIR/host.env"
ACTIVE_ENV="$LIFTOFF_CONFIG_DIR/active.env"
# shellcheck disable=SC2034  # used by liftoff-activate
PREVIOUS_ENV="$LIFTOFF_CONFIG_DIR/active.env.previous"

LIFTOFF_PROG="${LIFTOFF_PROG:-$(basename "$0")}"

log() {
    printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LIFTOFF_PROG" "$*" >&2
    # The journal keeps an audit trail of stage/activate runs next to the unit's own
    # state changes; skipped where there is no syslog socket (tests, containers).
    if [[ -S /dev/log ]]; then
        logger -t liftoff -- "$LIFTOFF_PROG: $*" 2>/dev/null || true
    fi
}

die() {
    local code="$1"
    shift
    log "ERROR: $*"
    exit "$code"
}

# Release tags only: immutable tags are what make a rollback mean something.
# semver (optionally v-prefixed, optional pre-release; no "+build": docker tags
# cannot hold "+") or an abbreviated/full lowercase git sha.
TAG_SEMVER_RE='^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
TAG_SHA_RE='^[0-9a-f]{7,40}$'

# Exits 2 on anything else, before any command that could change the host runs.
require_release_tag() {
    local tag="$1"
    if [[ ${#tag} -le 128 ]] && { [[ "$tag" =~ $TAG_SEMVER_RE ]] || [[ "$tag" =~ $TAG_SHA_RE ]]; }; then
        return 0
    fi
    die 2 "refusing image tag ${tag@Q}: allowed are release tags only," \
        "semver like 1.4.2, v1.4.2 or 1.4.2-rc.1, or a 7-40 character lowercase hex git sha" \
        "(mutable tags such as 'latest' are never deployed)"
}

usage_one_tag() {
    if [[ $# -ne 1 ]]; then
        die 2 "usage: $LIFTOFF_PROG TAG (got $# arguments)"
    fi
}

# host.env is written by user data and holds no secrets; it is also the unit's
# EnvironmentFile, so it stays plain KEY=value lines.
load_config() {
    [[ -r "$HOST_ENV" ]] || die 1 "missing host config $HOST_ENV (written by user data at boot)"
    set -a
    # shellcheck source=/dev/null
    . "$HOST_ENV"
    set +a
    local key missing=()
    for key in AWS_REGION REPOSITORY_URI CONTAINER_PORT HEALTH_CHECK_PATH DB_HOST DB_PORT DB_NAME \
        DB_SECRET_ARN LOG_GROUP STOP_TIMEOUT_SECONDS DRAIN_SECONDS HEALTH_TIMEOUT_SECONDS ACTIVE_TAG_PARAMETER; do
        [[ -n "${!key:-}" ]] || missing+=("$key")
    done
    [[ ${#missing[@]} -eq 0 ]] || die 1 "$HOST_ENV lacks: ${missing[*]}"
    for key in CONTAINER_PORT STOP_TIMEOUT_SECONDS DRAIN_SECONDS HEALTH_TIMEOUT_SECONDS; do
        [[ "${!key}" =~ ^[0-9]+$ ]] || die 1 "$HOST_ENV: $key must be a whole number, got '${!key}'"
    done
    # TimeoutStopSec=120 in liftoff-app.service; systemd would kill the app mid-shutdown.
    [[ "$STOP_TIMEOUT_SECONDS" -le 110 ]] || die 1 "$HOST_ENV: STOP_TIMEOUT_SECONDS must be at most 110, got $STOP_TIMEOUT_SECONDS"
    [[ "$HEALTH_CHECK_PATH" == /* ]] || die 1 "$HOST_ENV: HEALTH_CHECK_PATH must start with /, got '$HEALTH_CHECK_PATH'"
    TARGET_GROUP_ARN="${TARGET_GROUP_ARN:-}"
}

# Serialises stage/activate/boot: two overlapping activations would rotate
# active.env.previous twice and lose the version to roll back to.
take_lock() {
    mkdir -p "$(dirname "$LIFTOFF_LOCK_FILE")"
    exec 9>"$LIFTOFF_LOCK_FILE"
    flock -w 900 9 || die 1 "another liftoff command still holds $LIFTOFF_LOCK_FILE"
}

active_tag() {
    if [[ -r "$ACTIVE_ENV" ]]; then
        sed -n 's/^IMAGE_TAG=//p' "$ACTIVE_ENV" | tail -n 1
    fi
}

# Written via rename so the unit never reads a half-written file.
write_active_env() {
    local tag="$1" tmp
    mkdir -p "$LIFTOFF_CONFIG_DIR"
    tmp="$(mktemp "$LIFTOFF_CONFIG_DIR/.active.env.XXXXXX")"
    printf 'IMAGE_TAG=%s\n' "$tag" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$ACTIVE_ENV"
}

image_ref() {
    printf '%s:%s' "$REPOSITORY_URI" "$1"
}

ecr_login() {
    local registry="${REPOSITORY_URI%%/*}"
    log "logging in to $registry"
    aws ecr get-login-password --region "$AWS_REGION" |
        docker login --username AWS --password-stdin "$registry" >/dev/null
}

pull_image() {
    local ref
    ref="$(image_ref "$1")"
    ecr_login
    log "pulling $ref"
    docker pull --quiet "$ref" >/dev/null
}

ensure_image() {
    local ref
    ref="$(image_ref "$1")"
    if docker image inspect "$ref" >/dev/null 2>&1; then
        log "$ref already present, not pulling"
    else
        pull_image "$1"
    fi
}

app_healthy_once() {
    curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:${CONTAINER_PORT}${HEALTH_CHECK_PATH}" 2>/dev/null
}

# Polls until healthy or HEALTH_TIMEOUT_SECONDS have passed (always tries once).
# Microseconds from bash 5's EPOCHREALTIME (digits only: the decimal separator
# follows the locale); a whole-second clock would cut short timeouts by up to 1 s.
wait_healthy() {
    local deadline=$((${EPOCHREALTIME//[!0-9]/} + HEALTH_TIMEOUT_SECONDS * 1000000))
    while true; do
        if app_healthy_once; then
            return 0
        fi
        if [[ ${EPOCHREALTIME//[!0-9]/} -ge $deadline ]]; then
            return 1
        fi
        sleep "$LIFTOFF_HEALTH_POLL_SECONDS"
    done
}

imds_get() {
    local token
    token="$(curl -fsS --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" \
        "$LIFTOFF_IMDS_URL/latest/api/token")"
    curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$LIFTOFF_IMDS_URL/latest/meta-data/$1"
}
