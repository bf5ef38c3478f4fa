#!/usr/bin/env bash
# Install the release tool for the pipeline's jobs: boto3 and the two data packages config/ judges
# every stage against (cfn-lint: instance types and database classes per region; moto: memory and
# architectures per instance type), at the pins requirements.txt holds, then liftoff itself without
# the CDK (the gates need no synth). Run from any directory.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

pins=()
for package in boto3 cfn-lint moto; do
    pin="$(grep -E "^${package}([<>=!~ ]|$)" requirements.txt)" || die "$EXIT_USAGE" "requirements.txt pins no $package"
    pins+=("$pin")
done
# --no-compile: a job imports a small part of these (boto3's, and config's data files of cfn-lint and moto);
# Python compiles what it imports when it first does, not all of moto's and cfn-lint's modules up front.
python3 -m pip install --quiet --disable-pip-version-check --no-compile "${pins[@]}"
# setuptools leaves a build/ directory behind in the checkout; remove it unless it was there before.
[[ -e build ]] && had_build=1 || had_build=0
python3 -m pip install --quiet --disable-pip-version-check --no-deps .
[[ "$had_build" -eq 1 ]] || rm -rf build
command -v liftoff >/dev/null || die "$EXIT_USAGE" "liftoff is not on PATH after the install (pip's scripts directory: $(python3 -m site --user-base)/bin)"
log "installed liftoff ($(command -v liftoff)) with ${pins[*]}"
