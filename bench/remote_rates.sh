#!/usr/bin/env bash
# Transfer rates of the three kinds of remote on loopback: a folder, nginx with WebDAV PUT
# and s3rver (the servers of tests/remote*.rs, started here on free ports of 127.0.0.1 and
# stopped at the end). Project A runs the toy pipeline of the CLI tests with a worker
# double whose every output file is MIB MiB of distinct bytes (5 entries, 7 files), pushes
# it with `difflow push`, and a fresh project B takes it with `difflow pull`; each line is
# difflow's own total (bytes over the batch's wall-clock time; a pull's time includes
# checking every digest and committing the entry). Usage:
#   bench/remote_rates.sh [MIB] [REPEATS]     (defaults 32 and 3; needs a release build)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MIB=${1:-32}
REPEATS=${2:-3}
DIFFLOW="$ROOT/target/release/difflow"
S3RVER="$ROOT/tests/s3_server/node_modules/.bin/s3rver"
WORK=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }

cat >"$WORK/worker.py" <<'PY'
#!/usr/bin/env python3
# Every output file of the toy pipeline, MIB MiB of bytes that differ per file.
import hashlib, json, os, sys
job = json.load(open(sys.argv[1]))
print(json.dumps({"event": "begin", "what": "writing", "total": 1}), flush=True)
names = [job["kind"] + ".txt"] + (["grid.png"] if job["kind"] == "sample" else [])
for name in names:
    seed = hashlib.sha256((job["instance"] + name).encode()).digest()
    block = seed * (1 << 15)  # 1 MiB
    with open(os.path.join(job["out_dir"], name), "wb") as f:
        for _ in range(int(os.environ["MIB"])):
            f.write(block)
print(json.dumps({"event": "metric", "name": "loss", "value": 0.25}), flush=True)
PY
chmod +x "$WORK/worker.py"
cat >"$WORK/p.diff" <<'EOF'
dataset pts = toy { shape = "gaussians8", count = 512 }
schedule lin = linear { steps = 100 }
model net = mlp { hidden = 64, layers = 2 }
train ddpm { model = net, data = pts, schedule = lin, steps = 20, batch = 64, lr = 1e-3 }
sample gen { from = ddpm, sampler = ddim { steps = sweep(5, 10) }, count = 64, batch = 32 }
plot pic = scatter { of = [pts, gen] }
EOF

# nginx as tests/remote_support/nginx.rs configures it.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/root" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
pid nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path tmp;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/nginx/root;
    client_max_body_size 0;
    location / { dav_methods PUT; create_full_put_path on; }
  }
}
EOF
/usr/sbin/nginx -p "$WORK/nginx/" -c nginx.conf -e error.log -g 'daemon off; master_process off;' &
pids+=($!)
S3_PORT=$(free_port)
mkdir -p "$WORK/s3"
(cd "$WORK/s3" && exec "$S3RVER" -d data -a 127.0.0.1 -p "$S3_PORT" --configure-bucket bench >/dev/null 2>&1) &
pids+=($!)
wait_port "$NGINX_PORT"
wait_port "$S3_PORT"

project() { # project DIR REMOTE_TABLE
    mkdir -p "$1"
    cp "$WORK/p.diff" "$1/"
    printf '[remote]\n%s' "$2" >"$1/difflow.toml"
}
total() { grep -E "^(pushed|pulled) [0-9]+ entr" | sed -E 's/.*\(([^(]+ in [^(]+) \(([^)]*)\)\).*/\1, \2/'; }
export DIFFLOW_WORKER="$WORK/worker.py" MIB AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
for n in $(seq "$REPEATS"); do
    for kind in folder nginx s3rver; do
        case $kind in
        folder) table="url = \"file://$WORK/folder$n\"\n" ;;
        nginx) table="url = \"http://127.0.0.1:$NGINX_PORT/run$n\"\n" ;;
        s3rver) table="url = \"s3://bench/run$n\"\nendpoint = \"http://127.0.0.1:$S3_PORT\"\n" ;;
        esac
        a="$WORK/$kind$n-a" b="$WORK/$kind$n-b"
        project "$a" "$(printf "$table")"
        project "$b" "$(printf "$table")"
        (cd "$a" && "$DIFFLOW" run p.diff >/dev/null 2>&1)
        up=$(cd "$a" && "$DIFFLOW" push p.diff 2>/dev/null | total)
        down=$(cd "$b" && "$DIFFLOW" pull p.diff 2>/dev/null | total)
        printf '%-7s run %d  push %-32s pull %s\n' "$kind" "$n" "$up" "$down"
        rm -rf "$a" "$b"
    done
done
