#!/usr/bin/env bash
# The container check: builds rpc-demo's image (Dockerfile) and runs
# compose.yaml with rootful podman: a binder, two servers and a client that
# must print 5.0 and exit 0; then the course's hello in a client container
# (`Olá, João!`); then stops one server (SIGTERM: it must leave the binder
# and stop gracefully, quickly) and runs the client again, which must reach
# the other. Everything is built here: no image is pulled.
# Needs podman, runc and podman-compose (.ci/run installs them); tears the
# containers and their network down however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in podman podman-compose; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "the container check needs podman, runc and podman-compose (apt-get install podman runc podman-compose)" >&2
    exit 1
  }
done
# This machine has no systemd and refuses podman's default limits.
export CONTAINERS_CONF="$PWD/.ci/containers.conf"

project=rpc-demo-ci
target="${CARGO_TARGET_DIR:-target}"
binary="$target/x86_64-unknown-linux-gnu/container/rpc-demo"
log="$target/containers.log"
stage=""
started=$(date +%s)
step_started=$started

step() { echo "== containers: $*"; step_started=$(date +%s); }
took() { echo "   ($(($(date +%s) - step_started)) s)"; }
compose() { podman-compose -p "$project" -f compose.yaml "$@" >>"$log" 2>&1; }
# The container of compose service $1.
container() {
  podman ps -aq --filter "label=io.podman.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -n 1
}
fail() {
  echo "containers: $*" >&2
  for service in binder server1 server2 client; do
    id=$(container "$service")
    [ -n "$id" ] && { echo "-- logs of $service:" >&2; podman logs "$id" >&2 || true; }
  done
  echo "-- podman-compose's output: $log" >&2
  exit 1
}
teardown() {
  compose down -t 10 || true
  ids=$(podman ps -aq --filter "label=io.podman.compose.project=$project")
  [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
  podman network rm -f "${project}_default" >/dev/null 2>&1 || true
  [ -z "$stage" ] || rm -rf "$stage"
}
trap 'teardown; echo "== containers: $(($(date +%s) - started)) s in all"' EXIT
mkdir -p "$target"
: >"$log"
teardown # whatever a killed run left

step "static rpc-demo (glibc, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --profile container -p rpc-demo --target x86_64-unknown-linux-gnu
took

step "image rpc-demo (FROM scratch)"
# A context of the binary alone: the target directory may be anywhere.
stage=$(mktemp -d)
cp "$binary" "$stage/rpc-demo"
previous=$(podman image inspect -f '{{.Id}}' rpc-demo 2>/dev/null || true)
# One layer, no cached intermediates; the image it replaces is removed.
podman build -q --layers=false -f Dockerfile --build-arg BINARY=rpc-demo -t rpc-demo "$stage" >/dev/null
[ -z "$previous" ] || [ "$previous" = "$(podman image inspect -f '{{.Id}}' rpc-demo)" ] ||
  podman rmi "$previous" >/dev/null 2>&1 || true
took

step "compose up: binder, server1, server2, client"
compose up -d || fail "podman-compose up failed"
for service in binder server1 server2 client; do
  [ -n "$(container "$service")" ] || fail "no container for $service"
done
took

step "readiness: rpc-demo health in each server"
health() { podman exec "$(container "$1")" /rpc-demo health "127.0.0.1:$2" >/dev/null 2>&1; }
deadline=$(($(date +%s) + 60))
for pair in binder:7000 server1:7070 server2:7070; do
  until health "${pair%:*}" "${pair#*:}"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "${pair%:*} not healthy after 60 s"
    sleep 0.5
  done
done
took

step "the client: call Calculator add 2 3"
client=$(container client)
status=$(timeout 60 podman wait "$client") || fail "the client did not finish in 60 s"
output=$(podman logs "$client" 2>&1)
[ "$status" = 0 ] || fail "the client exited with $status: $output"
[ "$output" = "5.0" ] || fail "the client printed '$output', not 5.0"
echo "   printed $output, exit status 0"
registered=$(podman exec "$(container binder)" /rpc-demo lookup Calculator --binder 127.0.0.1:7000)
echo "$registered" | grep -q 'server1:7070' && echo "$registered" | grep -q 'server2:7070' ||
  fail "both servers should be registered: $registered"
took

step "the course's first RPC: hello, typed into a client container"
network=$(podman inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}' "$client")
output=$(echo João | timeout 60 podman run --rm -i --network "$network" rpc-demo hello --binder binder:7000 2>&1) ||
  fail "hello failed: $output"
[ "$output" = "Digite seu nome: Olá, João!" ] || fail "hello printed '$output'"
echo "   $output"
took

step "podman stop server1 (SIGTERM to PID 1): graceful, then the client again"
server1=$(container server1)
stop_started=$(date +%s)
podman stop -t 10 "$server1" >/dev/null
stopped_in=$(($(date +%s) - stop_started))
code=$(podman inspect -f '{{.State.ExitCode}}' "$server1")
[ "$code" = 0 ] || fail "server1 exited with $code after SIGTERM (137: killed, SIGTERM ignored)"
[ "$stopped_in" -lt 8 ] || fail "server1 took $stopped_in s to stop"
podman logs "$server1" 2>&1 | grep -q 'deregistered name="Calculator"' ||
  fail "server1 did not leave the binder"
registered=$(podman exec "$(container binder)" /rpc-demo lookup Calculator --binder 127.0.0.1:7000)
[ "$registered" = "Calculator  server2:7070" ] || fail "after the stop the binder has: $registered"
echo "   server1 stopped in ${stopped_in} s, exit status 0, deregistered"
output=$(timeout 60 podman start -a "$client" 2>&1) || fail "the client failed the second time: $output"
[ "$output" = "5.0" ] || fail "the second client printed '$output', not 5.0"
echo "   the client again (through server2): $output"
took

step "compose down"
teardown
stage=""
took
