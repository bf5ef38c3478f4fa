#!/usr/bin/env bash
# Wait for the registry's scan of an image: wait-scan.sh --stage S --version V [--timeout 600] [--interval 10]
# Exit 0 when the scan is complete (its findings go to the summary; whether they block is `liftoff
# stage`'s gate, --fail-severity), 2 when the tag is not in the repository, 3 when the scan failed or
# cannot run (liftoff would refuse the image), 4 on timeout or an AWS error.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

stage="" version="" timeout=600 interval=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    *) die "$EXIT_USAGE" "unknown option '$1'; usage: wait-scan.sh --stage S --version V [--timeout SECONDS] [--interval SECONDS]" ;;
  esac
done
[[ -n "$stage" && -n "$version" ]] || die "$EXIT_USAGE" "wait-scan.sh needs --stage and --version"
[[ "$timeout" =~ ^[0-9]+$ && "$interval" =~ ^[0-9]+$ ]] || die "$EXIT_USAGE" "--timeout and --interval take whole seconds"

deadline=$(( SECONDS + timeout ))
while true; do
  liftoff_json versions --stage "$stage"; versions="$LIFTOFF_OUT"
  [[ "$LIFTOFF_EXIT" -eq 0 ]] || die "$LIFTOFF_EXIT" "liftoff versions --stage $stage failed (exit $LIFTOFF_EXIT): $(jq -r '.error.message // "see the log"' <<< "$versions")"
  image="$(jq -c --arg v "$version" '.images[] | select(.tag == $v)' <<< "$versions")"
  [[ -n "$image" ]] || die "$EXIT_USAGE" "tag $version is not in $(jq -r .repository <<< "$versions"); push it first"
  status="$(jq -r '.scan_status' <<< "$image")"
  case "$status" in
    COMPLETE) break ;;
    FAILED|UNSUPPORTED_IMAGE|SCAN_ELIGIBILITY_EXPIRED|FINDINGS_UNAVAILABLE)
      die "$EXIT_REFUSED" "the scan of $version ended $status; liftoff stage refuses an image without a completed scan" ;;
  esac
  (( SECONDS < deadline )) || die "$EXIT_AWS" "the scan of $version is still $status after ${timeout}s"
  log "scan of $version: $status; next look in ${interval}s"
  sleep "$interval"
done
findings="$(jq -r '[.scan_findings | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", ") | if . == "" then "none" else . end' <<< "$image")"
log "scan of $version complete; findings: $findings"
output scan_findings "$findings"
summary "### Scan" "" "\`$version\` (\`$(jq -r .digest <<< "$image")\`): scan complete, findings: $findings." ""
