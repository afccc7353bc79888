#!/usr/bin/env bash
# Rebuild fuzz/corpus/notification from the project's notification fixtures and fuzz/seeds/ (distribution
# envelopes written for fuzzing: hostile names, push sequences, each manifest type): each seed is
# <type byte><header preset byte><body>, the layout fuzz_targets/notification.rs reads.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/notification
rm -rf "$out" && mkdir -p "$out"
seed() { # type-index header-preset file
  local name
  name=$(basename "$(dirname "$3")")-$(basename "$3")
  [ "$name" != "notifications-$(basename "$3")" ] || name=$(basename "$3")
  { printf "\\x$(printf %02x "$1")\\x$(printf %02x "$2")"; cat "$3"; } >"$out/$1-$2-$name"
}
fx=../fixtures/notifications
for f in "$fx"/*.json "$fx"/distribution/*.json seeds/distribution/*.json; do seed 0 0 "$f"; done
for f in "$fx"/harbor/*.json; do seed 1 0 "$f"; done
for f in "$fx"/quay/*.json; do seed 2 0 "$f"; done
for f in "$fx"/dockerhub/*.json; do seed 3 0 "$f"; done
seed 4 1 "$fx"/github/package-published.json
seed 4 2 "$fx"/github/registry-package-published.json
seed 4 1 "$fx"/github/ping.json
for f in "$fx"/cloudevents/*-data.json; do seed 5 3 "$f"; done
for f in "$fx"/cloudevents/*-structured.json; do seed 5 0 "$f"; done
for f in "$fx"/acr/*.json; do seed 6 0 "$f"; done
for f in "$fx"/artifactory/*.json; do seed 7 0 "$f"; done
echo "$(ls "$out" | wc -l) seeds in $out"
