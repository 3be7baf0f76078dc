#!/usr/bin/env bash
# Builds usher and shows it stopping an app behind `sh -c` gracefully:
# SIGTERM arrives, usher drains for 1s, forwards TERM to the app (which a
# plain `sh -c` as PID 1 would have swallowed), and prints the timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
usher="${CARGO_TARGET_DIR:-target}/release/usher"

app='trap "echo app: got SIGTERM, finishing in-flight work; sleep 0.3; echo app: bye; exit 0" TERM
echo "app: serving as pid $$"
while :; do sleep 0.2 & wait $!; done'

"$usher" --subreaper --drain 1s --grace-period 5s -- sh -c "$app" &
pid=$!
sleep 1
echo "demo: sending SIGTERM to usher (pid $pid), as docker stop or the kubelet would"
kill -TERM "$pid"
code=0
wait "$pid" || code=$?
echo "demo: usher exited with code $code"
