# Sourced by the scripts that start a server of their own (attack.sh, pgo-build.sh,
# perf-analyzer.sh).
#
# wait_ready PID URL [SECONDS]: polls URL until it answers 2xx, each probe bounded to 2 s,
# for up to SECONDS (60). Returns 1 at once when process PID has exited (gone, or a zombie
# not yet waited for): a server that failed to start (its port taken, say) has said why,
# and another process answering on the port is never taken for it.
wait_ready() {
  local pid=$1 url=$2 deadline=$((SECONDS + ${3:-60}))
  while ((SECONDS < deadline)); do
    [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == [^Z]* ]] || return 1
    curl -fs --max-time 2 "$url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
