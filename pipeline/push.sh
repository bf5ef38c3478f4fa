#!/usr/bin/env bash
# Push the built image once, under its immutable tag: push.sh --stage S --version V --registry HOST [--image liftoff-service:V]
# The repository is the one the stage's registry stack holds (liftoff reads its name from the stack).
# A tag already in the repository is not pushed again (tags are immutable: a re-run of the same
# commit finds its image there). Logging in to the registry is the CI's job before this step
# (GitHub: aws-actions/amazon-ecr-login; elsewhere: aws ecr get-login-password | docker login).
# Outputs the digest the registry answered the push with; wait-scan.sh then finds the image in ECR.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

stage="" version="" registry="" image=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    *) die "$EXIT_USAGE" "unknown option '$1'; usage: push.sh --stage S --version V --registry HOST [--image NAME:TAG]" ;;
  esac
done
[[ -n "$stage" && -n "$version" ]] || die "$EXIT_USAGE" "push.sh needs --stage and --version"
image="${image:-liftoff-service:$version}"

liftoff_json versions --stage "$stage"; versions="$LIFTOFF_OUT"
[[ "$LIFTOFF_EXIT" -eq 0 ]] || die "$LIFTOFF_EXIT" "liftoff versions --stage $stage failed (exit $LIFTOFF_EXIT): $(jq -r '.error.message // "see the log"' <<< "$versions")"
repository="$(jq -r '.repository' <<< "$versions")"
existing="$(jq -r --arg v "$version" '.images[] | select(.tag == $v) | .digest' <<< "$versions")"
if [[ -n "$existing" ]]; then
  log "$repository:$version is already in the registry ($existing); tags are immutable, so it is not pushed again"
  output digest "$existing"
  summary "### Push" "" "\`$repository:$version\` was already in the registry (\`$existing\`): not pushed again." ""
  exit "$EXIT_OK"
fi

[[ -n "$registry" ]] || die "$EXIT_USAGE" "push.sh needs --registry HOST (the registry you logged in to) to push $version"
remote="$registry/$repository:$version"
log "docker push $remote"
docker image inspect "$image" >/dev/null 2>&1 || die "$EXIT_USAGE" "no local image '$image'; run build.sh first"
docker tag "$image" "$remote"
docker push "$remote" >&2 || die "$EXIT_AWS" "docker push $remote failed (see above); nothing was tagged $version in $repository"
# The registry's own digest for what it stored, as docker recorded it from the push.
digest="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$remote" \
  | sed -n "s|^$registry/$repository@||p" | head -n 1)"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "$EXIT_AWS" "pushed $remote but docker recorded no digest for it"
log "pushed $remote ($digest)"
output digest "$digest"
summary "### Push" "" "| | |" "|---|---|" "| image | \`$remote\` |" "| digest | \`$digest\` |" "| registry | [$repository]($(console_link ecr "$repository")) |" ""
