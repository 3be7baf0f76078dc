# Sourced by tests/docker/setup.sh and examples/zero-downtime/images.sh:
# removes, by id, the containers and images an earlier run left behind when
# its owner died (killed test, Ctrl-C). They are labelled PREFIX=1,
# PREFIX.pid=OWNER_PID and PREFIX.host=HOSTNAME; only those of this host
# whose owner process is gone are touched. Needs `say` (progress lines).

# stale KIND PREFIX: ids of KIND (container|image) whose owner is gone.
stale() {
  local kind=$1 prefix=$2 ids id info pid h
  local host
  host=$(cat /proc/sys/kernel/hostname)
  if [ "$kind" = container ]; then
    ids=$(docker ps -aq --no-trunc --filter "label=$prefix=1")
  else
    ids=$(docker images -q --no-trunc --filter "label=$prefix=1" | sort -u)
  fi
  for id in $ids; do
    info=$(docker inspect -f "{{index .Config.Labels \"$prefix.pid\"}} {{index .Config.Labels \"$prefix.host\"}}" "$id" 2>/dev/null) || continue
    read -r pid h <<<"$info"
    if [ "$h" = "$host" ] && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$id"
    fi
  done
}

# sweep PREFIX: removes what stale finds, containers first.
sweep() {
  local prefix=$1 old
  old=$(stale container "$prefix")
  if [ -n "$old" ]; then
    say "removing containers left by earlier runs: $(echo $old)"
    docker rm -f -v $old >/dev/null || true
  fi
  # Several rounds: an image cannot go before the images built FROM it.
  for _ in 1 2 3; do
    old=$(stale image "$prefix")
    [ -n "$old" ] || break
    say "removing images left by earlier runs: $(echo $old)"
    docker rmi $old >/dev/null 2>&1 || true
  done
}
