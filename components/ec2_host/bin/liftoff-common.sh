# shellcheck shell=bash
# Shared by the liftoff-* host scripts (sourced, never executed).
# Paths are overridable so the scripts also run from the repo in tests.

LIFTOFF_CONFIG_DIR="${LIFTOFF_CONFIG_DIR:-/etc/liftoff}"
LIFTOFF_RUN_DIR="${LIFTOFF_RUN_DIR:-/run/liftoff}"
# Not under LIFTOFF_RUN_DIR: systemd deletes the unit's RuntimeDirectory on every
# restart, which would pull a held lock file out from under us.
LIFTOFF_LOCK_FILE="${LIFTOFF_LOCK_FILE:-/run/lock/liftoff.lock}"
# The log streams this boot has made (put_event_line); not under a unit's RuntimeDirectory either, for the same reason.
LIFTOFF_LOG_STREAMS_DIR="${LIFTOFF_LOG_STREAMS_DIR:-/run/liftoff-log-streams}"
LIFTOFF_IMDS_URL="${LIFTOFF_IMDS_URL:-http://169.254.169.254}"
LIFTOFF_HEALTH_POLL_SECONDS="${LIFTOFF_HEALTH_POLL_SECONDS:-2}"
# The first wait before an AWS call signed by curl is tried again (aws_json); the second is twice that.
LIFTOFF_AWS_RETRY_SECONDS="${LIFTOFF_AWS_RETRY_SECONDS:-1}"
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
    failed "$@"
    exit "$code"
}

# Logs an error and keeps it as the reason the gate's report gives, without exiting: for a caller that
# may carry on (a rollback), or exits through set -e.
failed() {
    log "ERROR: $*"
    LIFTOFF_FAILURE="$*"
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
    # Optional (a launch template from before readiness and reports): readiness is then liveness, and
    # the host reports nothing.
    READY_CHECK_PATH="${READY_CHECK_PATH:-$HEALTH_CHECK_PATH}"
    READY_TIMEOUT_SECONDS="${READY_TIMEOUT_SECONDS:-$HEALTH_TIMEOUT_SECONDS}"
    HOST_REPORT_PATH="${HOST_REPORT_PATH:-}"
    # Optional (a launch template from before the canary): no canary.
    CANARY_PERCENT="${CANARY_PERCENT:-0}"
    CANARY_SECONDS="${CANARY_SECONDS:-0}"
    CANARY_MIN_REQUESTS="${CANARY_MIN_REQUESTS:-10}"
    CANARY_MAX_ERROR_PERCENT="${CANARY_MAX_ERROR_PERCENT:-5}"
    CANARY_MAX_ADDED_MS="${CANARY_MAX_ADDED_MS:-250}"
    for key in CANARY_PERCENT CANARY_SECONDS CANARY_MIN_REQUESTS CANARY_MAX_ERROR_PERCENT CANARY_MAX_ADDED_MS; do
        [[ "${!key}" =~ ^[0-9]+$ ]] || die 1 "$HOST_ENV: $key must be a whole number, got '${!key}'"
    done
    [[ "$CANARY_PERCENT" -le 50 ]] || die 1 "$HOST_ENV: CANARY_PERCENT must be at most 50, got $CANARY_PERCENT"
    [[ "$READY_CHECK_PATH" == /* ]] || die 1 "$HOST_ENV: READY_CHECK_PATH must start with /, got '$READY_CHECK_PATH'"
    [[ "$READY_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || die 1 "$HOST_ENV: READY_TIMEOUT_SECONDS must be a whole number, got '$READY_TIMEOUT_SECONDS'"
    [[ -z "$HOST_REPORT_PATH" || "$HOST_REPORT_PATH" =~ ^/[A-Za-z0-9_./-]*/$ ]] ||
        die 1 "$HOST_ENV: HOST_REPORT_PATH must be an SSM parameter path starting and ending with /, got '$HOST_REPORT_PATH'"
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

# The registry's password for `docker login` (what `aws ecr get-login-password` prints), in a pipe only.
ecr_password() {
    aws_call ecr AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken '{}' ecr get-authorization-token |
        jq -er '.authorizationData[0].authorizationToken' | base64 -d | cut -d: -f2-
}

# A failed login or pull dies with the tool's own last line ("no space left on device", "i/o timeout",
# ...): it is the reason the gate's report gives.
ecr_login() {
    local registry="${REPOSITORY_URI%%/*}" errors why
    log "logging in to $registry"
    errors="$(mktemp)"
    if ! ecr_password 2>"$errors" |
        docker login --username AWS --password-stdin "$registry" >/dev/null 2>>"$errors"; then
        why="$(last_line "$errors")"
        rm -f "$errors"
        failed "ECR login to $registry: ${why:-failed}"
        return 1
    fi
    rm -f "$errors"
}

pull_image() {
    local ref errors why
    ref="$(image_ref "$1")"
    ecr_login || return 1
    log "pulling $ref"
    errors="$(mktemp)"
    if ! docker pull --quiet "$ref" >/dev/null 2>"$errors"; then
        why="$(last_line "$errors")"
        rm -f "$errors"
        failed "docker pull $ref: ${why:-failed}"
        return 1
    fi
    rm -f "$errors"
}

last_line() {
    grep -v '^[[:space:]]*$' "$1" | tail -n 1 | tr -d '\r'
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

# A new version whose container keeps exiting will not answer: a gate waiting on it gives up once systemd has
# restarted its unit CRASH_LIMIT times (RestartSec apart), as ECS's deployment circuit breaker gives up after
# three failed tasks, rather than after the whole HEALTH_TIMEOUT_SECONDS.
CRASH_LIMIT=3

# How many times systemd has restarted UNIT (Restart=always) since it was last started by hand.
unit_restarts() {
    local count
    count="$(systemctl show --property NRestarts --value "$1" 2>/dev/null)" || count=""
    [[ "$count" =~ ^[0-9]+$ ]] || count=0
    printf '%s' "$count"
}

# `wait_port_healthy PORT [UNIT]`: 0 once PORT answers HEALTH_CHECK_PATH; 1 after HEALTH_TIMEOUT_SECONDS, or as
# soon as UNIT's container has exited CRASH_LIMIT times. WAIT_FAILURE says which, after the version's tag.
# shellcheck disable=SC2034  # WAIT_FAILURE is read by the gate scripts that source this file
wait_port_healthy() {
    local port="$1" unit="${2:-}" deadline=$((${EPOCHREALTIME//[!0-9]/} + HEALTH_TIMEOUT_SECONDS * 1000000)) first=0 exits
    WAIT_FAILURE="did not answer on $HEALTH_CHECK_PATH within ${HEALTH_TIMEOUT_SECONDS}s"
    [[ -z "$unit" ]] || first="$(unit_restarts "$unit")"
    while true; do
        if port_healthy_once "$port"; then
            return 0
        fi
        if [[ -n "$unit" ]]; then
            exits=$(($(unit_restarts "$unit") - first))
            if [[ $exits -ge $CRASH_LIMIT ]]; then
                WAIT_FAILURE="exited $exits times in a row without answering on $HEALTH_CHECK_PATH (systemd restarted $unit each time)"
                return 1
            fi
        fi
        if [[ ${EPOCHREALTIME//[!0-9]/} -ge $deadline ]]; then
            return 1
        fi
        sleep "$LIFTOFF_HEALTH_POLL_SECONDS"
    done
}

# The service's readiness (READY_CHECK_PATH, /readyz): it can take requests now, the database included.
# Prints the last answer ("HTTP 503: {...}" or curl's error) for the failure reason.
port_ready_once() {
    local body errors code
    body="$(mktemp)"
    errors="$(mktemp)"
    code="$(curl -sS --max-time 5 -o "$body" -w '%{http_code}' "http://127.0.0.1:${1}${READY_CHECK_PATH}" 2>"$errors")" || true
    # shellcheck disable=SC2034  # read by liftoff-activate for its failure reason
    if [[ "$code" =~ ^[1-5][0-9][0-9]$ ]]; then
        READY_ANSWER="HTTP $code $(head -c 200 "$body" | tr -d '\n')"
    else
        READY_ANSWER="no answer ($(last_line "$errors"))"
    fi
    rm -f "$body" "$errors"
    [[ "$code" == 200 ]]
}

# Polls until ready or READY_TIMEOUT_SECONDS have passed (always tries once); READY_ANSWER holds the
# last answer.
wait_port_ready() {
    local port="$1" deadline=$((${EPOCHREALTIME//[!0-9]/} + READY_TIMEOUT_SECONDS * 1000000))
    while true; do
        if port_ready_once "$port"; then
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
    token="$(imds_token)"
    imds_read "$token" "$1"
}

imds_token() {
    curl -fsS --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$LIFTOFF_IMDS_URL/latest/api/token"
}

imds_read() {
    curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $1" "$LIFTOFF_IMDS_URL/latest/meta-data/$2"
}

# --- small AWS calls, signed by curl -----------------------------------------------------------------
# An event line (every slot start and stop, which waits for it in ExecStartPost), a host report (every gate), the
# database secret (every slot start), the registry's token (every pull), a boot's parameters and its Auto Scaling
# group are one small request each. The AWS CLI spends ~0.6 CPU-s starting up for each (measured in a host box); curl
# signs the same request (SigV4, with the instance role's credentials from IMDS, as the CLI gets them) in
# milliseconds. --aws-sigv4 needs curl 7.75 or later built with AWS auth: where this host's curl cannot sign, the
# caller makes the call with the CLI instead.
CURL_CANNOT_SIGN=3

# `aws_call SERVICE TARGET BODY CLI_WORDS...`: the call signed by curl (aws_json) or, where this curl cannot sign,
# the same call through the CLI (`aws CLI_WORDS... --region --output json`, whose answer has the API's shape).
aws_call() {
    local service="$1" target="$2" body="$3" code=0
    shift 3
    aws_json "$service" "$target" "$body" || code=$?
    [[ $code -eq $CURL_CANNOT_SIGN ]] || return "$code"
    aws "$@" --region "$AWS_REGION" --output json
}

# An SSM parameter's value.
parameter_value() {
    aws_call ssm AmazonSSM.GetParameter "$(jq -nc --arg name "$1" '{Name: $name}')" ssm get-parameter --name "$1" |
        jq -er '.Parameter.Value'
}

# Every SSM parameter under PATH (recursive), as one JSON array: page by page (the CLI pages by itself and answers
# all of them with no NextToken).
parameters_under() {
    local path="$1" page next="" all='[]'
    while true; do
        page="$(aws_call ssm AmazonSSM.GetParametersByPath "$(jq -nc --arg path "$path" --arg next "$next" \
            '{Path: $path, Recursive: true} + (if $next == "" then {} else {NextToken: $next} end)')" \
            ssm get-parameters-by-path --path "$path" --recursive)" || return
        all="$(jq -c --argjson all "$all" '$all + .Parameters' <<<"$page")" || return 1
        next="$(jq -r '.NextToken // ""' <<<"$page")" || return 1
        [[ -n "$next" ]] || break
    done
    printf '%s\n' "$all"
}

# The role's keys as curl config lines, for curl's standard input. IMDS writes them as JSON strings with nothing to
# unescape (keys and tokens are base64): bash reads those itself, a regex per key, as every AWS call needs them and
# Debian's jq 1.6 takes ~15 ms of CPU to start. A value with an escape in it is read by jq.
credentials_config() {
    local value='[[:space:]]*:[[:space:]]*"([^"\]*)"' key secret token
    if [[ $1 =~ \"AccessKeyId\"$value ]] && key="${BASH_REMATCH[1]}" &&
        [[ $1 =~ \"SecretAccessKey\"$value ]] && secret="${BASH_REMATCH[1]}" &&
        [[ $1 =~ \"Token\"$value ]] && token="${BASH_REMATCH[1]}"; then
        printf 'user = "%s:%s"\nheader = "X-Amz-Security-Token: %s"\n' "$key" "$secret" "$token"
        return 0
    fi
    jq -r '"user = \"\(.AccessKeyId):\(.SecretAccessKey)\"", "header = \"X-Amz-Security-Token: \(.Token)\""' <<<"$1"
}

# aws_json SERVICE TARGET BODY: AWS's JSON answer on stdout; non-zero with AWS's error ("Type: message") on stderr;
# CURL_CANNOT_SIGN when this curl cannot sign a request.
aws_json() {
    aws_signed "$1" "application/x-amz-json-1.1" "$3" "X-Amz-Target: $2"
}

# aws_query SERVICE VERSION ACTION NAME=VALUE...: the XML answer of a query-protocol API (Auto Scaling's) on stdout,
# as aws_json answers (the values are URL-encoded here).
aws_query() {
    local service="$1" body="Action=$3&Version=$2" pair
    shift 3
    for pair in "$@"; do
        body+="&${pair%%=*}=$(url_encoded "${pair#*=}")"
    done
    aws_signed "$service" "application/x-www-form-urlencoded; charset=utf-8" "$body"
}

# Byte by byte (LC_ALL=C), as SigV4 and the API read it.
url_encoded() {
    local LC_ALL=C text="$1" encoded="" char
    while [[ -n "$text" ]]; do
        char="${text:0:1}" text="${text:1}"
        case "$char" in
        [A-Za-z0-9._~-]) encoded+="$char" ;;
        *) encoded+="$(printf '%%%02X' "'$char")" ;;
        esac
    done
    printf '%s' "$encoded"
}

# The text of an XML element's content (AWS's query APIs answer in XML): its five escapes undone.
xml_text() {
    sed -e 's/&lt;/</g' -e 's/&gt;/>/g' -e "s/&apos;/'/g" -e 's/&quot;/"/g' -e 's/&amp;/\&/g'
}

# aws_signed SERVICE CONTENT_TYPE BODY [HEADER]: the request both protocols make. As the CLI does, a call that could
# not connect, or was answered 5xx or throttled (a fleet's hosts reporting at once), is tried again: three attempts.
aws_signed() {
    local service="$1" content_type="$2" body="$3" token role credentials domain host response status code attempt
    local -a extra=()
    [[ -z "${4:-}" ]] || extra=(-H "$4")
    token="$(imds_token)" && role="$(imds_read "$token" iam/security-credentials/)" &&
        credentials="$(imds_read "$token" "iam/security-credentials/$role")" || return 1
    # The partition's DNS suffix (amazonaws.com, amazonaws.com.cn, ...), as EC2 tells its instances.
    domain="$(imds_read "$token" services/domain 2>/dev/null)" || domain=amazonaws.com
    # The API's host is named after the service, but for ECR's (the registry itself is <account>.dkr.ecr).
    case "$service" in ecr) host="api.ecr.$AWS_REGION.$domain" ;; *) host="$service.$AWS_REGION.$domain" ;; esac
    for attempt in 1 2 3; do
        code=0
        # The role's keys go to curl on its standard input, never on a command line other users of the host can read;
        # the answer (a secret, a registry token) stays in memory: the status follows it on a line of its own.
        response="$(credentials_config "$credentials" | curl -sS --max-time 10 --config - --aws-sigv4 "aws:amz:$AWS_REGION:$service" \
            -H "Content-Type: $content_type" "${extra[@]}" --data-binary "$body" \
            -o - -w '\n%{http_code}' "https://$host/")" || code=$?
        # Unknown option (older curl), or libcurl built without AWS auth: nothing was sent.
        case "$code" in 2 | 4 | 48) return "$CURL_CANNOT_SIGN" ;; esac
        status="${response##*$'\n'}"
        response="${response%$'\n'*}"
        if [[ $code -eq 0 && "$status" == 2?? ]]; then
            printf '%s\n' "$response"
            return 0
        fi
        if [[ $code -eq 0 && "$status" != 5?? && "$status" != 429 ]] &&
            ! grep -qE 'Throttl|TooManyUpdates|RequestLimitExceeded' <<<"$response"; then
            break
        fi
        [[ $attempt -eq 3 ]] || sleep "$((attempt * LIFTOFF_AWS_RETRY_SECONDS))"
    done
    if [[ $code -eq 0 ]]; then
        aws_error "$status" "$response" >&2 || echo "HTTP $status from $service" >&2
    fi
    return 1
}

# "Type: message" from AWS's error answer: JSON ({"__type", "message"}) or XML (<Code>, <Message>).
aws_error() {
    local status="$1" response="$2" type message
    if [[ "$response" == "<"* ]]; then
        response="$(tr -d '\n' <<<"$response")"
        type="$(sed -n 's/.*<Code>\([^<]*\)<\/Code>.*/\1/p' <<<"$response" | xml_text)"
        message="$(sed -n 's/.*<Message>\([^<]*\)<\/Message>.*/\1/p' <<<"$response" | xml_text)"
        printf '%s: %s\n' "${type:-HTTP $status}" "$message"
    else
        jq -r --arg status "$status" '"\((.__type // "HTTP \($status)") | sub(".*#"; "")): \(.message // .Message // "")"' \
            <<<"$response" 2>/dev/null
    fi
}

# The Auto Scaling group INSTANCE belongs to ("" when none).
group_of_instance() {
    local answer code=0
    answer="$(aws_query autoscaling 2011-01-01 DescribeAutoScalingInstances "InstanceIds.member.1=$1")" || code=$?
    if [[ $code -eq $CURL_CANNOT_SIGN ]]; then
        answer="$(aws autoscaling describe-auto-scaling-instances --region "$AWS_REGION" --instance-ids "$1" \
            --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)" || return 1
        [[ "$answer" == None ]] || printf '%s\n' "$answer"
        return 0
    fi
    [[ $code -eq 0 ]] || return "$code"
    # One instance asked for: one group name at most.
    tr -d '\n' <<<"$answer" | sed -n 's/.*<AutoScalingGroupName>\([^<]*\)<\/AutoScalingGroupName>.*/\1/p' | xml_text
}

# The InService instances of Auto Scaling group GROUP, as a JSON array of their ids.
in_service_instances() {
    local answer code=0 ids="" id
    answer="$(aws_query autoscaling 2011-01-01 DescribeAutoScalingGroups "AutoScalingGroupNames.member.1=$1")" || code=$?
    if [[ $code -eq $CURL_CANNOT_SIGN ]]; then
        aws autoscaling describe-auto-scaling-groups --region "$AWS_REGION" --auto-scaling-group-names "$1" \
            --query "AutoScalingGroups[0].Instances[?LifecycleState=='InService'].InstanceId" --output json
        return
    fi
    [[ $code -eq 0 ]] || return "$code"
    # A <member> each: an instance's holds its InstanceId and LifecycleState (and no list); no other member of the
    # answer has an InstanceId. Instance ids are i- and hex digits: nothing to escape in JSON.
    while read -r id; do
        ids+="${ids:+,}\"$id\""
    done < <(tr -d '\n' <<<"$answer" | sed 's/<member>/\n/g' |
        sed -n '/<LifecycleState>InService<\/LifecycleState>/s/.*<InstanceId>\([^<]*\)<\/InstanceId>.*/\1/p')
    printf '[%s]\n' "$ids"
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
    server a 127.0.0.1:$SLOT_A_PORT weight $FULL_WEIGHT$a_state
    server b 127.0.0.1:$SLOT_B_PORT weight $FULL_WEIGHT$b_state
"
}

# A slot that takes all new requests has this weight; a canary splits it between the two slots.
FULL_WEIGHT=100

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
        # Its full weight too: a canary held back leaves its slot at weight 0, and the slot serves again later.
        proxy_command "set weight slots/$slot $FULL_WEIGHT; set server slots/$slot state ready; set server slots/$old state maint" >/dev/null
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
    # For the host report's warm_until; it counts only while the timer is active.
    atomic_write "$(warm_until_file "$slot")" "$(date -u -d "+${delay} seconds" +%Y-%m-%dT%H:%M:%SZ)"$'\n'
    printf '%s' "$delay"
}

warm_until_file() {
    printf '%s/warm-until-%s' "$LIFTOFF_CONFIG_DIR" "$1"
}

# --- canary ------------------------------------------------------------------------------------
# The new slot takes CANARY_PERCENT of this host's requests beside the serving slot, and a judge compares
# the two on the same traffic from the proxy's own counters, every second, for CANARY_SECONDS.

CANARY_FILE="$LIFTOFF_CONFIG_DIR/canary.json"

# "slot requests errors avg_ms" for slots a and b, counted by the proxy since its counters were cleared:
# requests answered plus those the slot failed (no connection, no answer); errors are 5xx answers and
# those failures (a request the proxy then sent to the other slot still counts against this one);
# avg_ms is HAProxy's average response time over the slot's recent requests.
proxy_slot_counters() {
    proxy_command "show stat" | awk -F, '
        NR == 1 { sub(/^# */, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == "slots" && ($2 == "a" || $2 == "b") {
            failed = $col["econ"] + $col["eresp"]
            answered = $col["hrsp_1xx"] + $col["hrsp_2xx"] + $col["hrsp_3xx"] + $col["hrsp_4xx"] + $col["hrsp_5xx"] + $col["hrsp_other"]
            print $2, answered + failed, $col["hrsp_5xx"] + failed, $col["rtime"] + 0 }'
}

# The judge, pure: `canary_judge NEW_REQUESTS NEW_ERRORS NEW_MS OLD_REQUESTS OLD_ERRORS OLD_MS` prints
# "bad <why>", or "wait <what it saw>" (not enough requests yet, or nothing wrong so far).
canary_judge() {
    awk -v nr="$1" -v ne="$2" -v nms="$3" -v old_requests="$4" -v oe="$5" -v oms="$6" -v min="$CANARY_MIN_REQUESTS" \
        -v max_error="$CANARY_MAX_ERROR_PERCENT" -v max_added="$CANARY_MAX_ADDED_MS" 'BEGIN {
        new_share = nr > 0 ? 100 * ne / nr : 0
        old_share = old_requests > 0 ? 100 * oe / old_requests : 0
        seen = sprintf("%d of %d requests failed (%.0f%%) against %d of %d (%.0f%%) on the serving slot; average %d ms against %d ms", ne, nr, new_share, oe, old_requests, old_share, nms, oms)
        if (nr < min) { print "wait " seen " (judged from " min " requests)"; exit }
        if (new_share > max_error && new_share > old_share + max_error) {
            printf "bad %s: more than %d%% failed (and %d points above the serving slot)\n", seen, max_error, max_error; exit }
        if (old_requests > 0 && nms > oms + max_added) {
            printf "bad %s: more than %d ms slower than the serving slot\n", seen, max_added; exit }
        print "wait " seen
    }'
}

write_canary_record() {
    local version="$1" verdict="$2" reason="$3" requests="$4" errors="$5" new_ms="$6" old_ms="$7" json
    if ! json="$(jq -nc --arg version "$version" --arg verdict "$verdict" --arg reason "$(printf '%s' "$reason" | cut -c1-300)" \
        --argjson requests "$requests" --argjson errors "$errors" --argjson new_ms "$new_ms" --argjson old_ms "$old_ms" \
        '{version: $version, verdict: $verdict, reason: $reason, requests: $requests, errors: $errors, new_ms: $new_ms, old_ms: $old_ms}')" ||
        ! atomic_write "$CANARY_FILE" "$json"$'\n'; then
        log "WARNING: could not record the canary's verdict in $CANARY_FILE"
    fi
}

# `run_canary NEW_SLOT TAG`: returns 0 when TAG may take all traffic (good, or not enough requests to judge),
# 1 when the judge held it back (its weight is 0 again and CANARY_VERDICT says why).
run_canary() {
    local new="$1" tag="$2" old counters verdict="" deadline line
    local nr=0 ne=0 nms=0 or=0 oe=0 oms=0
    old="$(other_slot "$new")"
    CANARY_VERDICT=""
    # Counters from zero, so both slots are compared on the same stretch of traffic.
    proxy_command "clear counters all; set weight slots/$old $((FULL_WEIGHT - CANARY_PERCENT)); set weight slots/$new $CANARY_PERCENT; set server slots/$new state ready" >/dev/null
    log "canary: $tag in slot $new takes ${CANARY_PERCENT}% of this host's requests for up to ${CANARY_SECONDS}s" \
        "(held back at more than ${CANARY_MAX_ERROR_PERCENT}% failed or ${CANARY_MAX_ADDED_MS} ms slower, from ${CANARY_MIN_REQUESTS} requests)"
    deadline=$((${EPOCHREALTIME//[!0-9]/} + CANARY_SECONDS * 1000000))
    while true; do
        sleep 1
        if counters="$(proxy_slot_counters)"; then
            read -r _ nr ne nms <<<"$(grep "^$new " <<<"$counters")"
            read -r _ or oe oms <<<"$(grep "^$old " <<<"$counters")"
            line="$(canary_judge "$nr" "$ne" "$nms" "$or" "$oe" "$oms")"
            verdict="${line%% *}"
            if [[ "$verdict" == bad ]]; then
                # At once, before anything else: no new request reaches the new slot from here.
                proxy_command "set weight slots/$new 0; set server slots/$new state maint; set weight slots/$old $FULL_WEIGHT" >/dev/null
                CANARY_VERDICT="${line#bad }"
                write_canary_record "$tag" bad "$CANARY_VERDICT" "$nr" "$ne" "$nms" "$oms"
                log "canary: held back $tag: $CANARY_VERDICT"
                return 1
            fi
        fi
        if [[ ${EPOCHREALTIME//[!0-9]/} -ge $deadline ]]; then
            break
        fi
    done
    line="${line#wait }"
    if [[ "$nr" -lt "$CANARY_MIN_REQUESTS" ]]; then
        write_canary_record "$tag" "not judged" "$line" "$nr" "$ne" "$nms" "$oms"
        log "canary: not judged ($line); $tag takes all traffic, and the release alarms stay the second line"
    else
        write_canary_record "$tag" good "$line" "$nr" "$ne" "$nms" "$oms"
        log "canary: $tag passed ($line)"
    fi
    return 0
}

# --- host report -------------------------------------------------------------------------------
# What this host really holds, as JSON in the SSM parameter HOST_REPORT_PATH<instance-id> (the contract:
# docs/release-flow.md). Written at boot, at the start and the end of every gate, and after a retire.
# Every value but last_gate and staged is read when the report is written: the proxy's admin socket for
# the active slot, docker for what runs and what is pulled, the service's readiness, systemd for the
# retire timer. last_gate is what the host did (a record, by nature); staged is what the stage gate was
# last asked to pull (staged_present says whether it is here now).

LAST_GATE_FILE="$LIFTOFF_CONFIG_DIR/last-gate.json"
STAGED_TAG_FILE="$LIFTOFF_CONFIG_DIR/staged-tag"

now_utc() {
    date -u +%Y-%m-%dT%H:%M:%SZ
}

# The release a container runs ("" unless it is running now): its image's tag, as docker sees it.
container_version() {
    local shown
    shown="$(docker inspect --format '{{.State.Running}} {{.Config.Image}}' "$1" 2>/dev/null)" || return 0
    [[ "$shown" == "true "* ]] || return 0
    shown="${shown#true }"
    printf '%s' "${shown##*:}"
}

host_report_json() {
    local instance="$1" slot="" active="" port="" ready=false staged="" staged_present=false warm="" warm_until=""
    local other
    if [[ "$ACTIVATION" == slots ]]; then
        slot="$(proxy_slot)"
        if [[ -n "$slot" ]]; then
            active="$(container_version "liftoff-app-$slot")"
            other="$(other_slot "$slot")"
            warm="$(container_version "liftoff-app-$other")"
            if [[ -n "$warm" ]] && systemctl is-active --quiet "$(retire_timer "$other").timer"; then
                warm_until="$(tr -d '[:space:]' <"$(warm_until_file "$other")" 2>/dev/null || true)"
            fi
        fi
        if [[ -n "$active" ]]; then port="$(slot_port "$slot")"; else slot=""; fi
    else
        active="$(container_version liftoff-app)"
        [[ -z "$active" ]] || port="$CONTAINER_PORT"
    fi
    if [[ -n "$port" ]] && port_ready_once "$port"; then
        ready=true
    fi
    staged="$(tr -d '[:space:]' <"$STAGED_TAG_FILE" 2>/dev/null || true)"
    if [[ -n "$staged" ]] && docker image inspect "$(image_ref "$staged")" >/dev/null 2>&1; then
        staged_present=true
    fi
    local last_gate canary
    last_gate="${REPORT_LAST_GATE:-$(cat "$LAST_GATE_FILE" 2>/dev/null || true)}"
    canary="$(cat "$CANARY_FILE" 2>/dev/null || true)"
    # The two records are read as they are and parsed here: one that is missing, cut short or not JSON is null (one jq
    # run per report: it starts in ~15 ms, and a fleet's gates write hundreds of reports).
    jq -nc --arg instance "$instance" --arg reported_at "$(now_utc)" --arg active "$active" --arg active_slot "$slot" \
        --argjson ready "$ready" --arg staged "$staged" --argjson staged_present "$staged_present" \
        --arg warm "$warm" --arg warm_until "$warm_until" --arg last_gate "$last_gate" --arg canary "$canary" \
        'def record: (try fromjson catch null) // null;
         {instance: $instance, reported_at: $reported_at, active: $active, active_slot: $active_slot, ready: $ready,
          staged: $staged, staged_present: $staged_present, warm: $warm, warm_until: $warm_until,
          last_gate: ($last_gate | record), canary: ($canary | record)}'
}

# Never fails its caller: a report that cannot be written is logged (journal, the gate's output and the
# instance's liftoff-host-report log stream when CloudWatch answers), and the gate's result stands.
# The report describes the host now; `--beside` makes and sends it in the background (its pid in
# REPORT_PID) with the gate's result as it is now, whatever the gate records meanwhile.
report_host() {
    [[ -n "$HOST_REPORT_PATH" ]] || return 0
    if [[ "${1:-}" == --beside ]]; then
        REPORT_LAST_GATE="$(cat "$LAST_GATE_FILE" 2>/dev/null || true)" report_host_now &
        REPORT_PID=$!
        return 0
    fi
    report_host_now
}

report_host_now() {
    local instance="" json errors
    errors="$(mktemp)"
    if instance="$(imds_get instance-id 2>"$errors")" && json="$(host_report_json "$instance" 2>>"$errors")"; then
        put_host_report "$instance" "$json" "$errors"
        return 0
    fi
    report_not_written "$instance" "$errors"
}

put_host_report() {
    local instance="$1" json="$2" errors="$3"
    if put_parameter "$HOST_REPORT_PATH$instance" "$json" >/dev/null 2>>"$errors"; then
        rm -f "$errors"
        return 0
    fi
    report_not_written "$instance" "$errors"
}

report_not_written() {
    local instance="$1" errors="$2" why
    why="$(last_line "$errors")"
    rm -f "$errors"
    log "WARNING: the host report $HOST_REPORT_PATH${instance:-<instance-id>} was not written (${why:-no reason given});" \
        "what this host holds is unchanged by it"
    put_event_line "${instance:-$(hostname)}/liftoff-host-report" \
        "$LIFTOFF_PROG: host report not written: ${why:-no reason given}" 2>/dev/null || true
    return 0
}

# One line into the stage's log group; non-zero when CloudWatch refuses. The stream is made on its first use after a
# boot and remembered under /run: each later line is one call, not two (a unit's ExecStartPost holds its start). A
# remembered stream that is gone is made again.
put_event_line() {
    local stream="$1" message="$2" events made
    made="$LIFTOFF_LOG_STREAMS_DIR/${stream//\//%}"
    events="$(jq -nc --arg message "$message" --argjson timestamp "$(date +%s%3N)" \
        '[{timestamp: $timestamp, message: $message}]')"
    if [[ -e "$made" ]] && put_log_events "$stream" "$events" >/dev/null 2>&1; then
        return 0
    fi
    create_log_stream "$stream" >/dev/null 2>&1 || true
    put_log_events "$stream" "$events" >/dev/null || return
    { mkdir -p "${made%/*}" && : >"$made"; } 2>/dev/null || true
}

# Each of these: signed by curl where it can, else the CLI (aws_call).
put_parameter() {
    aws_call ssm AmazonSSM.PutParameter "$(jq -nc --arg name "$1" --arg value "$2" \
        '{Name: $name, Value: $value, Type: "String", Overwrite: true}')" \
        ssm put-parameter --name "$1" --type String --overwrite --value "$2"
}

create_log_stream() {
    aws_call logs Logs_20140328.CreateLogStream "$(jq -nc --arg group "$LOG_GROUP" --arg stream "$1" \
        '{logGroupName: $group, logStreamName: $stream}')" \
        logs create-log-stream --log-group-name "$LOG_GROUP" --log-stream-name "$1"
}

put_log_events() {
    aws_call logs Logs_20140328.PutLogEvents "$(jq -nc --arg group "$LOG_GROUP" --arg stream "$1" \
        --argjson events "$2" '{logGroupName: $group, logStreamName: $stream, logEvents: $events}')" \
        logs put-log-events --log-group-name "$LOG_GROUP" --log-stream-name "$1" --log-events "$2"
}

record_gate() {
    local result="$1" reason="$2" json
    # One line, and short: the whole report must stay under the standard tier's 4 KB.
    reason="$(printf '%s' "$reason" | tr '\n\r' '  ' | cut -c1-500)"
    if json="$(jq -nc --arg gate "$GATE_NAME" --arg version "$GATE_VERSION" --arg result "$result" \
        --arg reason "$reason" --arg at "$(now_utc)" \
        '{gate: $gate, version: $version, result: $result, reason: $reason, at: $at}')" &&
        atomic_write "$LAST_GATE_FILE" "$json"$'\n'; then
        return 0
    fi
    log "WARNING: could not record the $GATE_NAME gate's result in $LAST_GATE_FILE"
}

# A gate (stage, activate, boot) reports `running` now and its result when the script exits, however it
# exits (a SIGKILL leaves `running`: the interrupted gate shows as such). The `running` report is made and
# sent beside the gate's work: reading the host (docker, the proxy, readiness) and starting the AWS CLI
# take a second or more, which a warm flip would otherwise wait for. It may describe the host as the gate
# changes it, and says the gate is running; the result's report waits for it, so the two never land out
# of order.
gate_begin() {
    GATE_NAME="$1"
    GATE_VERSION="$2"
    LIFTOFF_FAILURE=""
    record_gate running ""
    REPORT_PID=""
    report_host --beside
    trap 'gate_end $?' EXIT
}

gate_end() {
    local status="$1"
    if [[ "$status" -eq 0 ]]; then
        record_gate succeeded ""
    else
        record_gate failed "${LIFTOFF_FAILURE:-$LIFTOFF_PROG exited $status}"
    fi
    [[ -z "${REPORT_PID:-}" ]] || wait "$REPORT_PID" 2>/dev/null || true
    report_host
}
