#!/usr/bin/env bash
# Pass one release gate with liftoff and report it: release.sh stage|activate|rollback --stage S [--version V]
#   stage     the update gate: the stage pulls V; nothing restarts          (liftoff stage V)
#   activate  the activation gate: switch to a staged V, verified, then (ec2) the bake window's
#             release alarms watched, rolled back automatically on one  (liftoff activate V --yes;
#             --no-watch returns once verified)
#   rollback  back to the previous version, or to --version V               (liftoff rollback [--to V] --yes)
# Exits with liftoff's own code (0 ok, 2 bad input, 3 refused by a gate, 4 AWS error, 5 rolled back,
# 6 switched but not verified, 7 rolled back automatically by a release alarm); the job summary shows the versions, the ledger entry and links.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage="usage: release.sh stage|activate|rollback --stage S [--version V] [--no-watch]"
gate="${1:-}"; shift || true
stage="" version="" watch=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --no-watch) watch=0; shift ;;
    *) die "$EXIT_USAGE" "unknown option '$1'; $usage" ;;
  esac
done
[[ -n "$stage" ]] || die "$EXIT_USAGE" "release.sh needs --stage; $usage"
case "$gate" in
  stage)    [[ -n "$version" ]] || die "$EXIT_USAGE" "release.sh stage needs --version"; args=(stage "$version") ;;
  activate) [[ -n "$version" ]] || die "$EXIT_USAGE" "release.sh activate needs --version"; args=(activate "$version" --yes); [[ $watch -eq 1 ]] || args+=(--no-watch) ;;
  rollback) args=(rollback --yes); [[ -n "$version" ]] && args+=(--to "$version") ;;
  *) die "$EXIT_USAGE" "gate '$gate' is not allowed; expected stage, activate or rollback. $usage" ;;
esac

log "liftoff ${args[*]} --stage $stage"
liftoff_json "${args[@]}" --stage "$stage"; result="$LIFTOFF_OUT"
code="$LIFTOFF_EXIT"

outcome="$(jq -r '.result // "refused"' <<< "$result")"
from="$(jq -r '.from // "-" | if . == "" then "-" else . end' <<< "$result")"
to="$(jq -r --arg v "${version:--}" '.to // $v' <<< "$result")"
release_id="$(jq -r '.release_id // ""' <<< "$result")"
output result "$outcome"
output exit_code "$code"
output from "$from"
output to "$to"
output release_id "$release_id"

case "$code" in
  "$EXIT_OK")          verdict="ok" ;;
  "$EXIT_USAGE")       verdict="bad input (exit 2): nothing changed" ;;
  "$EXIT_REFUSED")     verdict="refused by a gate (exit 3): nothing changed" ;;
  "$EXIT_AWS")         verdict="AWS error (exit 4)" ;;
  "$EXIT_ROLLED_BACK") verdict="rolled back by CloudFormation (exit 5): $from is still active" ;;
  "$EXIT_UNVERIFIED")  verdict="switched but not verified healthy (exit 6): run the rollback workflow to go back to $from" ;;
  "$EXIT_AUTO_ROLLED_BACK") verdict="a release alarm fired in the bake window (exit 7): rolled back automatically to $from" ;;
  *)                   verdict="exit $code" ;;
esac

service_stack="$stage-service"
lines=("### liftoff $gate on $stage: $verdict" "" "| | |" "|---|---|"
       "| versions | \`$from\` → \`$to\` |" "| result | $outcome |")
message="$(jq -r '.error.message // .message // ""' <<< "$result")"
[[ -n "$message" ]] && lines+=("| message | ${message//|/\\|} |")
[[ -n "$(jq -r '.error.hint // ""' <<< "$result")" ]] && lines+=("| next | $(jq -r '.error.hint' <<< "$result" | sed 's/|/\\|/g') |")
if [[ -n "$release_id" ]]; then
  # The ledger entry as the ledger holds it now, not as this run remembers it.
  liftoff_json history --stage "$stage" --limit 20; history="$LIFTOFF_OUT"
  entry="$(jq -c --arg id "$release_id" '[.entries[]? | select(.release_id == $id)][0] // empty' <<< "$history")"
  if [[ -n "$entry" ]]; then
    lines+=("| ledger entry | \`$release_id\`: $(jq -r '"\(.gate) \(.from_version) → \(.to_version), \(.result), by \(.who), started \(.started_at)"' <<< "$entry") |"
            "| digest | \`$(jq -r '.digest' <<< "$entry")\` |")
  else
    lines+=("| ledger entry | \`$release_id\` (not found in the ledger's newest entries) |")
  fi
fi
lines+=("| stack | [$service_stack]($(console_link cloudformation "$service_stack")) |")
run="$(run_link)"
[[ -n "$run" ]] && lines+=("| run | [$run]($run) |")
summary "${lines[@]}" ""
log "liftoff $gate on $stage: $verdict"
exit "$code"
