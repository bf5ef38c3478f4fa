#!/usr/bin/env bash
# The image tag for this commit: a release tag v1.4.2 gives 1.4.2, a branch commit gives its full sha.
# Reads the CI's ref (GitHub: GITHUB_REF_TYPE, GITHUB_REF_NAME, GITHUB_SHA; or --ref-type/--ref-name/--sha).
# Prints/outputs `version`. Exit 2 when the ref gives no release tag liftoff accepts.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

ref_type="${GITHUB_REF_TYPE:-}" ref_name="${GITHUB_REF_NAME:-}" sha="${GITHUB_SHA:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ref-type) ref_type="$2"; shift 2 ;;
    --ref-name) ref_name="$2"; shift 2 ;;
    --sha) sha="$2"; shift 2 ;;
    *) die "$EXIT_USAGE" "unknown option '$1'; usage: image-tag.sh [--ref-type tag|branch] [--ref-name NAME] [--sha SHA]" ;;
  esac
done

case "$ref_type" in
  tag)
    [[ "$ref_name" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] \
      || die "$EXIT_USAGE" "tag '$ref_name' is not a release tag; expected v followed by a semantic version, like v1.4.2"
    version="${ref_name#v}" ;;
  branch)
    [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "$EXIT_USAGE" "commit sha '$sha' is not allowed; expected 40 lowercase hex characters"
    version="$sha" ;;
  *) die "$EXIT_USAGE" "ref type '$ref_type' is not allowed; expected tag or branch" ;;
esac
# The same rule every other gate applies (config.RELEASE_TAG_PATTERN).
python3 -c 'import sys, config; config.check_release_tag(sys.argv[1])' "$version" \
  || die "$EXIT_USAGE" "image tag '$version' is not a release tag liftoff accepts"
log "image tag $version (from $ref_type $ref_name)"
output version "$version"
