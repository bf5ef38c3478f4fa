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
# activation: slots — which slot (a or b) the host proxy sends traffic to.
ACTIVE_SLOT_FILE="$LIFTOFF_CONFIG_DIR/active-slot"
PROXY_CONFIG="$LIFTOFF_CONFIG_DIR/proxy.cfg"
PROXY_SOCKET="${LIFTOFF_PROXY_SOCKET:-/run/liftoff-proxy/admin.sock}"
# shellcheck disable=SC2034  # used by the slot scripts
PROXY_UNIT="liftoff-proxy.service"

LIFTOFF_PROG="${LIFTOFF_PROG:-$(basename "$0")}"
LIFTOFF_BIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

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
    for key in AWS_REGION REPOSITORY_URI CONTAINER_PORT CONTAINER_MEMORY_MIB HEALTH_CHECK_PATH DB_HOST DB_PORT DB_NAME \
        DB_SECRET_ARN LOG_GROUP STOP_TIMEOUT_SECONDS DRAIN_SECONDS HEALTH_TIMEOUT_SECONDS ACTIVE_TAG_PARAMETER; do
        [[ -n "${!key:-}" ]] || missing+=("$key")
    done
    [[ ${#missing[@]} -eq 0 ]] || die 1 "$HOST_ENV lacks: ${missing[*]}"
    ACTIVATION="${ACTIVATION:-restart}"
    case "$ACTIVATION" in
        restart) ;;
        slots)
            for key in SLOT_A_PORT SLOT_B_PORT BAKE_SECONDS; do
                [[ -n "${!key:-}" ]] || missing+=("$key")
            done
            [[ ${#missing[@]} -eq 0 ]] || die 1 "$HOST_ENV lacks: ${missing[*]} (needed by ACTIVATION=slots)"
            ;;
        *) die 1 "$HOST_ENV: ACTIVATION must be slots or restart, got '$ACTIVATION'" ;;
    esac
    for key in CONTAINER_PORT STOP_TIMEOUT_SECONDS DRAIN_SECONDS HEALTH_TIMEOUT_SECONDS ${SLOT_A_PORT:+SLOT_A_PORT SLOT_B_PORT BAKE_SECONDS}; do
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

# The port the load balancer checks: the container's own (restart) or the host proxy's (slots).
app_healthy_once() {
    port_healthy_once "$CONTAINER_PORT"
}

port_healthy_once() {
    curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:${1}${HEALTH_CHECK_PATH}" 2>/dev/null
}

# Polls until healthy or HEALTH_TIMEOUT_SECONDS have passed (always tries once).
# Microseconds from bash 5's EPOCHREALTIME (digits only: the decimal separator
# follows the locale); a whole-second clock would cut short timeouts by up to 1 s.
wait_healthy() {
    wait_port_healthy "$CONTAINER_PORT"
}

wait_port_healthy() {
    local port="$1" deadline=$((${EPOCHREALTIME//[!0-9]/} + HEALTH_TIMEOUT_SECONDS * 1000000))
    while true; do
        if port_healthy_once "$port"; then
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

# --- activation: slots ------------------------------------------------------------------------
# Two containers, slot a and slot b, each on its own loopback port; the host proxy (HAProxy) listens
# on CONTAINER_PORT, the port the load balancer registers, and sends every request to the active
# slot. A switch starts the new version in the idle slot, waits for its health, then flips the proxy:
# the load balancer's target never changes, so nothing drains and nothing fails.

slot_unit() {
    printf 'liftoff-slot@%s.service' "$1"
}

slot_env() {
    printf '%s/slot-%s.env' "$LIFTOFF_CONFIG_DIR" "$1"
}

slot_port() {
    case "$1" in
        a) printf '%s' "$SLOT_A_PORT" ;;
        b) printf '%s' "$SLOT_B_PORT" ;;
        *) die 1 "no such slot '$1' (slots are a and b)" ;;
    esac
}

other_slot() {
    if [[ "$1" == a ]]; then printf b; else printf a; fi
}

active_slot() {
    if [[ -r "$ACTIVE_SLOT_FILE" ]]; then
        tr -d '[:space:]' <"$ACTIVE_SLOT_FILE"
    fi
}

slot_tag() {
    local file
    file="$(slot_env "$1")"
    if [[ -r "$file" ]]; then
        sed -n 's/^IMAGE_TAG=//p' "$file" | tail -n 1
    fi
}

# Running, answering its health check on its own port, and holding `tag` (when given).
slot_serves() {
    local slot="$1" tag="${2:-}"
    [[ -z "$tag" || "$(slot_tag "$slot")" == "$tag" ]] &&
        systemctl is-active --quiet "$(slot_unit "$slot")" &&
        port_healthy_once "$(slot_port "$slot")"
}

atomic_write() {
    local target="$1" content="$2" tmp
    tmp="$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX")"
    printf '%s' "$content" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$target"
}

write_slot_env() {
    atomic_write "$(slot_env "$1")" "$(printf 'IMAGE_TAG=%s\nSLOT_PORT=%s\n' "$2" "$(slot_port "$1")")"$'\n'
}

# The whole proxy config, with only the active slot enabled: a proxy (re)start always comes up
# pointing where the last switch pointed.
write_proxy_config() {
    local active="$1" a_state="" b_state=""
    [[ "$active" == a ]] && b_state=" disabled"
    [[ "$active" == b ]] && a_state=" disabled"
    atomic_write "$PROXY_CONFIG" "# Written by liftoff-activate / liftoff-boot; never edit by hand.
global
    stats socket $PROXY_SOCKET mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    # Above the load balancer's idle timeout (60 s), so it is the ALB that closes idle connections.
    timeout client 65s
    timeout http-keep-alive 65s
    timeout server 60s
    # A request that met a connection the slot had just closed is sent again, never answered 502.
    retries 2
    retry-on conn-failure empty-response
    option redispatch

frontend app
    bind :$CONTAINER_PORT
    default_backend slots

backend slots
    server a 127.0.0.1:$SLOT_A_PORT$a_state
    server b 127.0.0.1:$SLOT_B_PORT$b_state
"
}

proxy_command() {
    printf '%s\n' "$1" | socat -t 5 - "UNIX-CONNECT:$PROXY_SOCKET"
}

# New requests go to `slot` from this instant; requests already inside the old slot finish there.
# Both commands in one line: the proxy applies them together, never with no server enabled.
# The record comes first: a switch killed half-way leaves the record ahead of the proxy, and the
# next activation puts the proxy back in step (proxy_in_step) before it touches any slot.
route_to_slot() {
    local slot="$1" old
    old="$(other_slot "$slot")"
    atomic_write "$ACTIVE_SLOT_FILE" "$slot"$'\n'
    write_proxy_config "$slot"
    if systemctl is-active --quiet "$PROXY_UNIT"; then
        proxy_command "set server slots/$slot state ready; set server slots/$old state maint" >/dev/null
    else
        systemctl start "$PROXY_UNIT"
    fi
}

# The slot the running proxy sends new requests to ("" when it is down or sends to both or none).
proxy_slot() {
    local states
    states="$(proxy_command "show stat" 2>/dev/null | awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == "status") col = i; next }
        $1 == "slots" && ($2 == "a" || $2 == "b") && $col != "MAINT" { print $2 }')" || true
    [[ "$states" == a || "$states" == b ]] && printf '%s' "$states"
    return 0
}

proxy_in_step() {
    local recorded="$1" serving
    serving="$(proxy_slot)"
    if [[ "$serving" != "$recorded" ]]; then
        log "the host proxy sends traffic to slot ${serving:-none}, not the recorded slot $recorded (an interrupted" \
            "switch, or a proxy restart): routing to slot $recorded again"
        route_to_slot "$recorded"
    fi
}

retire_timer() {
    printf 'liftoff-retire-%s' "$1"
}

cancel_retire() {
    systemctl stop "$(retire_timer "$1").timer" >/dev/null 2>&1 || true
}

# The previous version stays warm for BAKE_SECONDS (at least the drain time, for requests still
# inside it); then liftoff-retire stops it unless it has become the active slot again.
schedule_retire() {
    local slot="$1" delay="$BAKE_SECONDS"
    [[ "$delay" -ge "$DRAIN_SECONDS" ]] || delay="$DRAIN_SECONDS"
    cancel_retire "$slot"
    systemd-run --quiet --unit "$(retire_timer "$slot")" --on-active="${delay}s" --timer-property=AccuracySec=1s \
        "$LIFTOFF_BIN_DIR/liftoff-retire" "$slot"
    printf '%s' "$delay"
}
