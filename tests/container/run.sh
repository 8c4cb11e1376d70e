#!/usr/bin/env bash
# The container test: builds the image (scripts/image.sh), then with real containers
#  1. runs it with a read-only root filesystem and a mounted model repository: readiness,
#     every zoo sample over V2 infer and /predict, /metrics, the image's own properties
#     (non-root, no shell, OCI labels);
#  2. `podman stop` (SIGTERM) with requests in flight: every request answered 200, or 503
#     (arrived while draining), or refused at connect (listener closed: never admitted);
#     exit code 0;
#  3. two replicas behind nginx (Debian's, on the host): a client streams requests through
#     nginx while the replicas are restarted one after the other; no request may fail;
#  4. the image with `--memory 512m` and 8 concurrent 60 MB /predict bodies: the default
#     in-flight budget comes from the container's cgroup limit, so no OOM kill and every
#     client is answered (200/413/429/503).
# MLPSERVE_RELEASE_BIN=path skips the release build inside scripts/image.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
t0=$SECONDS

image="${IMAGE:-mlpserve:latest}"
read -r -a pflags <<<"${PODMAN_FLAGS:---runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000}"
client=(python3 "$root/tests/container/client.py")
suffix="$$"
tmp="$(mktemp -d)"
containers=()
nginx_pid=""
cleanup() {
  [[ -n "$nginx_pid" ]] && kill "$nginx_pid" 2>/dev/null || true
  for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # url, container
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "$1/v2/health/ready" 2>/dev/null && return 0
    [[ "$(podman inspect "$2" --format '{{.State.Running}}')" == true ]] || break
    sleep 0.1
  done
  echo "container $2 not ready:" >&2
  podman logs "$2" 2>&1 | tail -20 >&2
  return 1
}

# start NAME HOST_PORT: a replica on a read-only root with the test repository mounted.
start() {
  containers+=("$1")
  podman run -d --name "$1" "${pflags[@]}" --read-only \
    -p "127.0.0.1:$2:8000" -v "$repo:/models:ro" "$image" --shutdown-timeout 20 >/dev/null
  wait_ready "http://127.0.0.1:$2" "$1"
}

# stop NAME: SIGTERM, wait for the drain, insist on exit code 0.
stop() {
  podman stop -t 30 "$1" >/dev/null
  local code
  code="$(podman inspect "$1" --format '{{.State.ExitCode}}')"
  podman rm "$1" >/dev/null
  [[ "$code" == 0 ]] || { echo "container $1 exited with $code" >&2; return 1; }
}

if ! command -v curl >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
fi

echo "== building $image"
scripts/image.sh
size="$(podman image inspect "$image" --format '{{.Size}}')"
echo "image size: $((size / 1000000)) MB ($size bytes)"

echo "== image properties"
[[ "$(podman image inspect "$image" --format '{{.Config.User}}')" == 10001:10001 ]]
for label in version revision licenses; do
  value="$(podman image inspect "$image" --format "{{index .Labels \"org.opencontainers.image.$label\"}}")"
  [[ -n "$value" ]] || { echo "OCI label $label missing" >&2; exit 1; }
done
if podman run --rm "${pflags[@]}" --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
  echo "the image has a shell" >&2
  exit 1
fi
echo "user 10001, OCI labels present, no shell"

# The zoo, plus drain_probe: mlp_digits waiting up to 0.5 s for a batch of 256, so requests
# are surely queued when SIGTERM arrives.
repo="$tmp/models"
mkdir -p "$repo"
for m in models/*/; do [[ -f "$m/1/model.onnx" ]] && cp -r "$m" "$repo/"; done
mkdir -p "$repo/drain_probe/1"
cp models/mlp_digits/1/model.onnx "$repo/drain_probe/1/"
printf 'max_batch_size = 256\npreferred_batch_sizes = [256]\nmax_queue_delay_us = 500000\n' \
  >"$repo/drain_probe/config.toml"
chmod -R a+rX "$tmp"

echo "== one container: read-only root, mounted repository"
port="$(free_port)"
start "mlpserve-test-$suffix" "$port"
base="http://127.0.0.1:$port"
"${client[@]}" zoo "$base" "$repo"
"${client[@]}" metrics "$base"

echo "== podman stop with requests in flight"
"${client[@]}" drain "$base" drain_probe mlp_digits podman stop -t 30 "mlpserve-test-$suffix"
code="$(podman inspect "mlpserve-test-$suffix" --format '{{.State.ExitCode}}')"
echo "exit code after SIGTERM: $code"
[[ "$code" == 0 ]]

echo "== two replicas behind nginx, rolling restart"
if ! command -v nginx >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
p1="$(free_port)"; p2="$(free_port)"; lb="$(free_port)"
# No active health checks in open-source nginx: a replica that closed its listener fails
# at connect, one that is draining answers 503, and nginx retries either on the other
# replica. Inference is a pure function of its input, so retrying a POST is safe
# (non_idempotent).
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  upstream mlpserve {
    server 127.0.0.1:$p1 max_fails=1 fail_timeout=1s;
    server 127.0.0.1:$p2 max_fails=1 fail_timeout=1s;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$lb;
    location / {
      proxy_pass http://mlpserve;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_next_upstream_tries 2;
    }
  }
}
EOF
start "mlpserve-a-$suffix" "$p1"
start "mlpserve-b-$suffix" "$p2"
nginx -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$lb/v2/health/ready" 2>/dev/null && break; sleep 0.1; done

cat >"$tmp/roll.sh" <<EOF
#!/usr/bin/env bash
# Rolling update: replace a, then b; each new replica is ready before the next goes.
set -euo pipefail
$(declare -f start stop wait_ready)
$(declare -p pflags image repo)
containers=()
# After a replica is ready, wait out nginx's fail_timeout (1 s) plus a margin: nginx may
# have marked the port failed while the new replica was still loading, and must take it
# back before the other replica goes (Kubernetes' minReadySeconds plays this role).
stop "mlpserve-a-$suffix"; start "mlpserve-a2-$suffix" "$p1"; sleep 2
stop "mlpserve-b-$suffix"; start "mlpserve-b2-$suffix" "$p2"; sleep 2
EOF
containers+=("mlpserve-a2-$suffix" "mlpserve-b2-$suffix")
# What the balancer absorbed (or not): its upstream errors, by kind.
nginx_errors() {
  echo "nginx upstream errors during the restart, by kind:"
  sed -n 's/.*\] [0-9#]*: \*[0-9]* \(.*\) while .*/  \1/p; s/.*\] [0-9#]*: \*[0-9]* \(no live upstreams\).*/  \1/p' \
    "$tmp/nginx/error.log" | sed 's/([0-9]*: /(/' | sort | uniq -c
}
if ! "${client[@]}" stream "http://127.0.0.1:$lb" mlp_digits bash "$tmp/roll.sh"; then
  nginx_errors
  grep -v 'no live upstreams' "$tmp/nginx/error.log" | head -20 >&2
  exit 1
fi
nginx_errors

echo "== --memory 512m, concurrent large bodies"
port="$(free_port)"
name="mlpserve-mem-$suffix"
containers+=("$name")
# The whole zoo resident (~200 MB): decoded tensors and answers are charged to the budget,
# so the bodies it admits fit beside the models within the container's limit.
podman run -d --name "$name" "${pflags[@]}" --read-only --memory 512m --memory-swap 512m \
  -p "127.0.0.1:$port:8000" -v "$repo:/models:ro" "$image" >/dev/null
wait_ready "http://127.0.0.1:$port" "$name"
podman logs "$name" 2>&1 | grep -m1 'in-flight memory budget' || true
"${client[@]}" memory "http://127.0.0.1:$port" 8 60
[[ "$(podman inspect "$name" --format '{{.State.OOMKilled}}')" == false ]] || { echo "OOM-killed" >&2; exit 1; }
[[ "$(podman inspect "$name" --format '{{.State.Running}}')" == true ]] || { echo "the container exited" >&2; podman logs "$name" 2>&1 | tail -5 >&2; exit 1; }
podman rm -f -t 0 "$name" >/dev/null

echo "container test passed in $((SECONDS - t0)) s"
