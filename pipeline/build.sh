#!/usr/bin/env bash
# Build the service image for the stage's architecture: build.sh --version V [--platform linux/arm64] [--context service]
# Tags it locally as liftoff-service:V (push.sh names it for the registry). Passes PYTHON_IMAGE to the
# Dockerfile when set (a base image from elsewhere than Docker Hub).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

version="" platform="linux/arm64" context="service"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --platform) platform="$2"; shift 2 ;;
    --context) context="$2"; shift 2 ;;
    *) die "$EXIT_USAGE" "unknown option '$1'; usage: build.sh --version V [--platform linux/arm64|linux/amd64] [--context DIR]" ;;
  esac
done
python3 -c 'import sys, config; config.check_release_tag(sys.argv[1])' "$version" 2>/dev/null \
  || die "$EXIT_USAGE" "version '$version' is not a release tag; expected a semantic version like 1.4.2 or a git sha"
[[ "$platform" == linux/arm64 || "$platform" == linux/amd64 ]] \
  || die "$EXIT_USAGE" "platform '$platform' is not allowed; expected linux/arm64 or linux/amd64"
[[ -f "$context/Dockerfile" ]] || die "$EXIT_USAGE" "no Dockerfile in '$context'"

build_args=()
[[ -n "${PYTHON_IMAGE:-}" ]] && build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
# The schema contract labels, read from the migration files (the Dockerfile refuses values that disagree).
schema_args="$(cd "$context" && PYTHONPATH=. python3 -m liftoff_service.schema build-args)" \
  || die "$EXIT_USAGE" "cannot read the schema contract from $context/migrations (see above)"
while IFS= read -r line; do build_args+=(--build-arg "$line"); done <<<"$schema_args"
log "docker build --platform $platform -t liftoff-service:$version $context"
docker build --platform "$platform" "${build_args[@]}" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=${GITHUB_SHA:-unknown}" \
  -t "liftoff-service:$version" "$context" >&2
image_id="$(docker image inspect --format '{{.Id}}' "liftoff-service:$version")"
output image "liftoff-service:$version"
summary "### Build" "" "| | |" "|---|---|" "| version | \`$version\` |" "| platform | $platform |" "| image id | \`$image_id\` |" ""
