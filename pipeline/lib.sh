# shellcheck shell=bash
# Shared by the pipeline steps. The steps read liftoff's `--json` document and exit code, never its
# human text, and write what they did to the CI's job summary and step outputs when the CI has them
# (GitHub: $GITHUB_STEP_SUMMARY, $GITHUB_OUTPUT); elsewhere the summary goes to stderr.
set -euo pipefail

PIPELINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PIPELINE_DIR/.." && pwd)"
cd "$REPO_ROOT"

# The release tool's command. LIFTOFF may name another way to run the same tool (e.g.
# `python -m release`, or the emulator's stand-in runtime in tests); it is split on spaces.
read -r -a LIFTOFF_CMD <<< "${LIFTOFF:-liftoff}"
LIFTOFF_CONFIG="${LIFTOFF_CONFIG:-cdk.json}"

# liftoff's documented exit codes (docs/release-tool.md), used by the steps that source this file.
# shellcheck disable=SC2034
readonly EXIT_OK=0 EXIT_USAGE=2 EXIT_REFUSED=3 EXIT_AWS=4 EXIT_ROLLED_BACK=5 EXIT_UNVERIFIED=6 EXIT_AUTO_ROLLED_BACK=7

log() { printf 'pipeline: %s\n' "$*" >&2; }

die() {  # die CODE MESSAGE
  local code="$1"; shift
  printf 'pipeline: %s\n' "$*" >&2
  summary "**Failed:** $*"
  exit "$code"
}

summary() {  # append markdown lines to the job summary
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    printf '%s\n' "$@" >> "$GITHUB_STEP_SUMMARY"
  else
    printf '%s\n' "$@" >&2
  fi
}

output() {  # output NAME VALUE: a step output (GitHub) or NAME=VALUE on stdout
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    printf '%s=%s\n' "$1" "$2" >> "$GITHUB_OUTPUT"
  else
    printf '%s=%s\n' "$1" "$2"
  fi
}

# liftoff_json ARGS...: run liftoff with --json; its JSON document lands in LIFTOFF_OUT, its exit code in
# LIFTOFF_EXIT. Progress (stderr) passes through to the log. Never fails the script by itself.
liftoff_json() {
  set +e
  LIFTOFF_OUT="$("${LIFTOFF_CMD[@]}" "$@" --config "$LIFTOFF_CONFIG" --json)"
  LIFTOFF_EXIT=$?
  set -e
  if ! jq -e 'type == "object"' >/dev/null 2>&1 <<< "$LIFTOFF_OUT"; then
    log "liftoff $1 printed no JSON document (exit $LIFTOFF_EXIT)"
    LIFTOFF_OUT='{}'
    if [[ "$LIFTOFF_EXIT" -eq 0 ]]; then LIFTOFF_EXIT=$EXIT_AWS; fi
  fi
  return 0
}

run_link() {  # the CI run, when the CI says where it is
  if [[ -n "${GITHUB_RUN_ID:-}" ]]; then
    printf '%s/%s/actions/runs/%s' "${GITHUB_SERVER_URL:-https://github.com}" "${GITHUB_REPOSITORY:-}" "$GITHUB_RUN_ID"
  fi
}

console_link() {  # console_link cloudformation|ecr NAME
  local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
  case "$1" in
    cloudformation) printf 'https://%s.console.aws.amazon.com/cloudformation/home?region=%s#/stacks?filteringText=%s' "$region" "$region" "$2" ;;
    ecr) printf 'https://%s.console.aws.amazon.com/ecr/repositories/private/%s?region=%s' "$region" "$2" "$region" ;;
  esac
}
