#!/usr/bin/env bash
# Benchmarks the agentfs router side by side with nginx, haproxy and caddy on
# this machine, and writes BENCHMARKS.md (never edit that file by hand).
#
# Measured in one run (see docs/router.md and SPEC.md, Performance):
#   - the same over TLS (scripts/bench/tls.sh): h2 and HTTPS/1.1 with h2load,
#     the router vs nginx and haproxy terminating TLS with the same leaf;
#   - proxy throughput/latency to a `return 200` nginx backend on a Unix
#     socket: agentfs router, nginx (upstream keepalive), haproxy (http-reuse
#     always), caddy, and the backend over TCP with no proxy as the ceiling;
#     wrk -t1 --latency at -c50 and -c500, the systems alternated round by
#     round, each figure the median of $BENCH_ROUNDS runs;
#   - per-request cost with 1 vs 1,000 routes (paired rounds, the router's
#     CPU counted in units of the backend's), idle RSS, RSS with 1,000
#     instances, 5,000 WebSocket tunnels held 30 s;
#   - shim overhead: a Node server wrapped vs listening natively on a UDS,
#     both behind the router; process start-up with and without the shim
#     (paired short rounds);
#   - discovery: listen() -> first routed 200, SIGKILL -> route gone.
#
# Needs root (or sudo) only to install missing tools from Debian. Every
# process it starts is ended by pid on exit, failure included.
# Knobs: BENCH_ROUNDS (7), BENCH_SECS (5), BENCH_WS (5000), BENCH_WS_HOLD (30),
# BENCH_PORT_BASE (28080), BENCH_OUT (BENCHMARKS.md).
# BENCH_ONLY=proxy, tls, shim, scale (1 route vs 1,000) or startup: only that
# phase, its figures printed to stdout and BENCHMARKS.md left alone (for
# trying a change; the report needs a full run).
set -euo pipefail
export LC_ALL=C # numbers with a decimal point, whatever the user's locale
cd "$(dirname "$0")/.."
root=$(pwd)
here=$root/scripts/bench

ROUNDS=${BENCH_ROUNDS:-7}
SECS=${BENCH_SECS:-5}
WS_N=${BENCH_WS:-5000}
WS_HOLD=${BENCH_WS_HOLD:-30}
BASE=${BENCH_PORT_BASE:-28080}
OUT=${BENCH_OUT:-$root/BENCHMARKS.md}
SCALE_N=1000
STARTUP_ROUNDS=11 STARTUP_RUNS=40
SCALE_ROUNDS=$((ROUNDS * 2 - 1)) # a route-count round compares two runs of one system: more of them

P_ROUTER=$BASE P_DIRECT=$((BASE + 1)) P_NGINX=$((BASE + 2)) P_HAPROXY=$((BASE + 3)) P_CADDY=$((BASE + 4))
P_ORIGINAL=3000 # the backend's own port (bench.main.3000.sock), mirrored by the router

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------- tools
install_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v caddy >/dev/null || missing+=(caddy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    command -v node >/dev/null || missing+=(nodejs)
    command -v python3 >/dev/null || missing+=(python3)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# ---------------------------------------------------------------- processes
PIDS=()
W=""

# The pid and all its descendants (collected before anything is signalled).
tree() {
    local p=$1 c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do tree "$c"; done
}

stop_pid() {
    local all p i
    all=$(tree "$1")
    for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 1 40); do
        local alive=0
        for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.05
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$1" 2>/dev/null || true
}

cleanup() {
    local status=$?
    set +e
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
    [ -n "$W" ] && rm -rf "$W"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in the background with output to $W/logs/<name>; records its pid.
start() {
    local name=$1
    shift
    "$@" >"$W/logs/$name" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
}

wait_http() { # port host path [want-status]
    local i code
    for i in $(seq 1 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $2" "http://127.0.0.1:$1$3" || true)
        [ "$code" = "${4:-200}" ] && return 0
        sleep 0.05
    done
    die "no ${4:-200} from 127.0.0.1:$1$3 (Host $2); logs in $W/logs"
}

wait_routed() { # instance label: until the router's route list shows it
    local i
    for i in $(seq 1 400); do
        curl -s -H 'Host: localhost' "http://127.0.0.1:$P_ROUTER/api/routes" | grep -q "\"instance\":\"$1\"" && return 0
        sleep 0.05
    done
    die "instance $1 never routed"
}

rescan() { curl -s -o /dev/null --unix-socket "$H/router.sock" -X POST http://router/v1/rescan; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# utime+stime (clock ticks) of a process tree.
cpu_ticks() {
    local t=0 p
    for p in $(tree "$1"); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo $t
}

# ---------------------------------------------------------------- wrk
# One wrk run: prints "req/s p50_ms p99_ms errors cpu_us_per_req", and with a
# control pid (the backend) a sixth column: the control's CPU µs/req.
wrk_once() { # port conns host cpu-pid [control-pid]
    local before after out ctl0=0 ctl1=0
    before=$(cpu_ticks "$4")
    [ -n "${5:-}" ] && ctl0=$(cpu_ticks "$5")
    out=$(wrk -t1 -c"$2" -d"${SECS}s" --latency -H "Host: $3" "http://127.0.0.1:$1/" 2>&1 || true)
    after=$(cpu_ticks "$4")
    [ -n "${5:-}" ] && ctl1=$(cpu_ticks "$5")
    printf '%s\n' "$out" >>"$W/logs/wrk-all"
    printf '%s\n' "$out" | awk -v ticks=$((after - before)) -v ctl=$((ctl1 - ctl0)) -v want_ctl="${5:+1}" -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        function per_req(t) { return n > 0 ? t * 1e6 / hz / n : 0 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec/ { rps = $2 }
        /^ +Non-2xx/ { err += $NF }
        /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) err += $i }
        /requests in/ { n = $1 }
        END {
            printf "%.0f %.3f %.3f %d %.2f", rps, p50, p99, err, per_req(ticks)
            if (want_ctl) printf " %.2f", per_req(ctl)
            printf "\n"
        }'
}

# Median of column $2 of file $1.
median() { sort -g -k"$2,$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# shellcheck source=scripts/bench/tls.sh
. "$here/tls.sh"

# ---------------------------------------------------------------- configs
# nginx as the proxy in front of the backend, in $W/<dir>: the server
# block's listen line and any lines after it are the arguments.
nginx_proxy_conf() { # dir server-lines...
    local dir=$1 user_line=""
    shift
    [ "$(id -u)" = 0 ] && user_line="user root;"
    cat <<EOF
$user_line
worker_processes auto;
worker_rlimit_nofile 20000;
daemon off;
pid $W/$dir/nginx.pid;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $W/$dir/tmp;
    proxy_temp_path $W/$dir/ptmp;
    upstream app { server unix:$BACKEND_SOCK; keepalive 1024; keepalive_requests 1000000; }
    server {
$(printf '        %s\n' "$@")
        keepalive_requests 1000000;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
}

# haproxy in front of the backend; the frontend's bind line is the argument.
haproxy_conf() { # bind-line
    cat <<EOF
global
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend bench
    $1
    default_backend app
backend app
    server backend unix@$BACKEND_SOCK
EOF
}

write_configs() {
    local user_line=""
    # nginx started as root runs its workers as nobody, who cannot enter run/ (0700).
    [ "$(id -u)" = 0 ] && user_line="user root;"
    mkdir -p "$W/ngx-backend" "$W/ngx-proxy" "$W/caddy"
    cat >"$W/ngx-backend/nginx.conf" <<EOF
$user_line
worker_processes 1;
daemon off;
pid $W/ngx-backend/nginx.pid;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $W/ngx-backend/tmp;
    server {
        listen unix:$BACKEND_SOCK;
        listen 127.0.0.1:$P_DIRECT;
        keepalive_requests 1000000;
        location / { return 200 "ok\n"; }
    }
}
EOF
    nginx_proxy_conf ngx-proxy "listen 127.0.0.1:$P_NGINX;" >"$W/ngx-proxy/nginx.conf"
    haproxy_conf "bind 127.0.0.1:$P_HAPROXY" >"$W/haproxy.cfg"
    cat >"$W/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
}
:$P_CADDY {
    bind 127.0.0.1
    reverse_proxy unix/$BACKEND_SOCK
}
EOF
}

start_all() {
    say "starting the router, the backend, nginx, haproxy, caddy"
    start router env AGENTFS_HOME="$H" AGENTFS_DRAIN_TIMEOUT_SECS=1 "$AGENTFS" router run --port "$P_ROUTER"
    PID_ROUTER=$LAST_PID
    wait_http "$P_ROUTER" localhost /api/routes
    sleep 1
    IDLE_RSS=$(rss_kb "$PID_ROUTER")
    start backend nginx -e "$W/logs/backend.err" -p "$W/ngx-backend" -c "$W/ngx-backend/nginx.conf"
    PID_BACKEND=$LAST_PID
    start nginx nginx -e "$W/logs/nginx.err" -p "$W/ngx-proxy" -c "$W/ngx-proxy/nginx.conf"
    PID_NGINX=$LAST_PID
    start haproxy haproxy -db -f "$W/haproxy.cfg"
    PID_HAPROXY=$LAST_PID
    start caddy env HOME="$W/caddy" XDG_DATA_HOME="$W/caddy" XDG_CONFIG_HOME="$W/caddy" \
        caddy run --adapter caddyfile --config "$W/caddy/Caddyfile"
    PID_CADDY=$LAST_PID
    wait_http "$P_DIRECT" bench.localhost /
    rescan
    local p
    for p in "$P_ROUTER" "$P_NGINX" "$P_HAPROXY" "$P_CADDY" "$P_ORIGINAL"; do wait_http "$p" bench.localhost /; done
}

# ---------------------------------------------------------------- phases
# name -> "port cpu-pid"
target_of() {
    case $1 in
    router) echo "$P_ROUTER $PID_ROUTER" ;;
    nginx) echo "$P_NGINX $PID_NGINX" ;;
    haproxy) echo "$P_HAPROXY $PID_HAPROXY" ;;
    caddy) echo "$P_CADDY $PID_CADDY" ;;
    direct) echo "$P_DIRECT $PID_BACKEND" ;;
    original) echo "$P_ORIGINAL $PID_ROUTER" ;;
    esac
}

# `original`: the router again, on the backend's own port (3000, which the
# router mirrors on loopback while the instance holds it).
SYSTEMS=(router nginx haproxy caddy direct original)

proxy_phase() {
    local c r i n=${#SYSTEMS[@]} sys port pid
    for c in 50 500; do
        for sys in "${SYSTEMS[@]}"; do wrk_once $(target_of "$sys" | cut -d' ' -f1) "$c" bench.localhost "$(target_of "$sys" | cut -d' ' -f2)" >/dev/null; done
        for ((r = 0; r < ROUNDS; r++)); do
            for ((i = 0; i < n; i++)); do
                sys=${SYSTEMS[$(((i + r) % n))]}
                read -r port pid <<<"$(target_of "$sys")"
                say "proxy -c$c round $((r + 1))/$ROUNDS: $sys"
                wrk_once "$port" "$c" bench.localhost "$pid" >>"$W/res/$sys.$c"
            done
        done
    done
}

# 1 route vs 1,000: the extra instances' sockets are moved into run/ and out
# again (a rename, which the router's watch sees); which count is measured
# first alternates from round to round.
scale_phase() {
    say "registering $SCALE_N instances"
    mkdir -p "$W/park"
    start holder python3 "$here/hold_sockets.py" "$W/park" bench f $((SCALE_N - 1))
    local holder=$LAST_PID
    local i
    for i in $(seq 1 200); do grep -q ready "$W/logs/holder" && break; sleep 0.05; done
    local r n
    for ((r = 0; r < SCALE_ROUNDS; r++)); do
        for n in $( ((r % 2)) && echo "$SCALE_N 1" || echo "1 $SCALE_N"); do
            if [ "$n" = 1 ]; then
                find "$RUN" -name 'bench.f*.sock' -exec mv -t "$W/park" {} +
                rescan
            else
                find "$W/park" -name '*.sock' -exec mv -t "$RUN" {} +
                rescan
                wait_routed "f$(printf %04d $((SCALE_N - 2)))"
                [ -z "${SCALE_RSS:-}" ] && sleep 1 && SCALE_RSS=$(rss_kb "$PID_ROUTER")
            fi
            say "routes: $n, round $((r + 1))/$SCALE_ROUNDS"
            wrk_once "$P_ROUTER" 50 main.bench.localhost "$PID_ROUTER" "$PID_BACKEND" >>"$W/res/routes.$n"
        done
    done
    # Out again, so that later phases see one route (and rescans no dead sockets).
    find "$RUN" -name 'bench.f*.sock' -exec mv -t "$W/park" {} +
    rescan
    stop_pid "$holder"
}

shim_phase() {
    say "shim overhead: a wrapped Node server vs the same server on a UDS, both behind the router"
    start node-wrapped env AGENTFS_HOME="$H" "$AGENTFS" wrap --no-router --name nodeshim --instance main -- \
        node "$here/node_server.js" 3000
    local wrapped=$LAST_PID
    start node-native node "$here/node_server.js" "$RUN/nodenative.main.3000.sock"
    local native=$LAST_PID
    local i h
    for h in nodeshim nodenative; do # the native socket has no sidecar: found by a rescan
        for i in $(seq 1 200); do rescan; curl -s -o /dev/null -f -H "Host: $h.localhost" "http://127.0.0.1:$P_ROUTER/" && break; sleep 0.05; done
    done
    wait_http "$P_ROUTER" nodeshim.localhost /
    wait_http "$P_ROUTER" nodenative.localhost /
    local r
    for ((r = 0; r < ROUNDS; r++)); do
        say "shim round $((r + 1))/$ROUNDS"
        if ((r % 2)); then
            wrk_once "$P_ROUTER" 50 nodenative.localhost "$native" >>"$W/res/node.native"
            wrk_once "$P_ROUTER" 50 nodeshim.localhost "$wrapped" >>"$W/res/node.wrapped"
        else
            wrk_once "$P_ROUTER" 50 nodeshim.localhost "$wrapped" >>"$W/res/node.wrapped"
            wrk_once "$P_ROUTER" 50 nodenative.localhost "$native" >>"$W/res/node.native"
        fi
    done
    stop_pid "$wrapped"
    stop_pid "$native"
}

# Process start-up with and without the shim: hyperfine, in short rounds that
# alternate which goes first.
startup_phase() {
    say "start-up with and without LD_PRELOAD"
    local r prog name plain shim py
    py=$(python3 -c 'import sys; print(sys.executable)') # not a version manager's wrapper script
    for prog in /bin/true "$py -c pass"; do
        name=$(basename "${prog%% *}")
        plain="env AGENTFS_HOME=$H $prog"
        shim="env LD_PRELOAD=$SHIM AGENTFS_HOME=$H AGENTFS_APP=startup AGENTFS_INSTANCE=main $prog"
        # Short rounds, so that both sides of a round meet the same moment of
        # this shared machine; the overhead is the median of the rounds' differences.
        for ((r = 0; r < STARTUP_ROUNDS; r++)); do
            local cmds=("$plain" "$shim")
            ((r % 2)) && cmds=("$shim" "$plain")
            hyperfine -N --style none --warmup 5 --runs "$STARTUP_RUNS" --export-json "$W/res/hf.json" "${cmds[@]}" >/dev/null 2>&1
            python3 - "$W/res/hf.json" "$plain" >>"$W/res/startup.$name" <<'EOF'
import json, sys
d = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
plain = d.pop(sys.argv[2])
shim = list(d.values())[0]
print(f"{plain:.3f} {shim:.3f} {shim - plain:.3f}")
EOF
        done
    done
}

discovery_phase() {
    say "discovery: 30 fresh listeners"
    start discovery python3 "$here/discovery.py" "$P_ROUTER" "$H" "$SHIM" 30
    wait "$LAST_PID"
}

ws_phase() {
    say "$WS_N WebSocket tunnels held ${WS_HOLD}s"
    start ws-backend node "$here/ws_backend.js" "$RUN/ws.main.3000.sock"
    local backend=$LAST_PID i
    for i in $(seq 1 100); do rescan; curl -s -o /dev/null -f -H 'Host: ws.localhost' "http://127.0.0.1:$P_ROUTER/" && break; sleep 0.05; done
    start ws-client python3 "$here/ws_hold.py" "$P_ROUTER" "$WS_N" "$WS_HOLD" "$PID_ROUTER"
    wait "$LAST_PID"
    stop_pid "$backend"
}

# ---------------------------------------------------------------- report
col() { median "$W/res/$1" "$2"; }
spread() { sort -g -k"$2,$2" "$W/res/$1" | awk -v c="$2" 'NR == 1 { lo = $c } { hi = $c } END { printf "%.2f … %.2f", lo, hi }'; }

# The route-count figures: r<N> req/s, c<N> router CPU µs/req, b<N> the
# backend's (medians); the change with SCALE_N routes vs 1 in the same round,
# in %, median of rounds: raw, the router's CPU per request, and cost, the
# same counted in units of the backend's (which does the same work whatever
# the route count, so the speed of this shared machine at that moment cancels
# out; but a slower router would also make the backend's batches smaller and
# its CPU per request higher, which hides part of it: both must pass).
scale_figures() {
    local n
    for n in 1 "$SCALE_N"; do
        echo "r$n=$(col "routes.$n" 1) c$n=$(col "routes.$n" 5) b$n=$(col "routes.$n" 6)"
    done
    paste "$W/res/routes.1" "$W/res/routes.$SCALE_N" | awk '
        $5 > 0 && $6 > 0 && $12 > 0 { print ($11 / $5 - 1) * 100, (($11 / $12) / ($5 / $6) - 1) * 100 }' >"$W/res/routes.cost"
    echo "raw=$(printf %+.1f "$(col routes.cost 1)") raw_range='$(spread routes.cost 1)'"
    echo "cost=$(printf %+.1f "$(col routes.cost 2)") cost_range='$(spread routes.cost 2)'"
}
errs() { awk '{ e += $4 } END { print e + 0 }' "$W/res/$1"; }
abs() { awk -v a="$1" 'BEGIN { printf "%.1f", (a < 0 ? -a : a) }'; }
both() { local v; for v in "$@"; do [ "$v" = met ] || { echo "**missed**"; return; }; done; echo met; }
check() { if awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }"; then echo met; else echo "**missed**"; fi; }

# Median over rounds of column $3 of $1's run divided by $2's in the same round
# (both were run within half a minute of each other, so a slower or faster
# spell of this shared machine affects both); unrounded.
paired() {
    paste "$W/res/$1" "$W/res/$2" | awk -v c="$3" -v n="$(head -n1 "$W/res/$1" | wc -w)" '
        $(n + c) > 0 { print $c / $(n + c) }' >"$W/res/pair" # a round where one served nothing: left out
    col pair 1
}
r3() { printf %.3f "$1"; }

proxy_table() {
    local c sys
    echo "| -c | system | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s vs nginx | req/s vs haproxy |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for c in 50 500; do
        for sys in router original nginx haproxy caddy direct; do
            local label=$sys
            [ "$sys" = router ] && label="**agentfs router**"
            [ "$sys" = original ] && label="agentfs router on the app's original port (localhost:$P_ORIGINAL)"
            [ "$sys" = direct ] && label="backend direct over TCP (ceiling)"
            echo "| $c | $label | $(col "$sys.$c" 1) | $(col "$sys.$c" 2) | $(col "$sys.$c" 3) | $(col "$sys.$c" 5) | $(errs "$sys.$c") | $(r3 "$(paired "$sys.$c" nginx.$c 1)") | $(r3 "$(paired "$sys.$c" haproxy.$c 1)") |"
        done
    done
}

proxy_rounds() {
    local c sys
    echo "| -c | system | each round: req/s / p99 ms |"
    echo "|---:|---|---|"
    for c in 50 500; do
        for sys in router nginx haproxy; do
            echo "| $c | $sys | $(awk '{ printf "%s%s / %s", sep, $1, $3; sep = " · " }' "$W/res/$sys.$c") |"
        done
    done
}

proxy_checks() {
    local c vn vh p99 p99h
    for c in 50 500; do
        vn=$(paired router.$c nginx.$c 1) vh=$(paired router.$c haproxy.$c 1)
        p99=$(paired router.$c nginx.$c 3) p99h=$(paired router.$c haproxy.$c 3)
        echo "| router ≥ 1.0× nginx req/s at -c$c | $(r3 "$vn")× | $(check "$vn" 1 '>=') |"
        echo "| router ≥ 1.0× haproxy req/s at -c$c | $(r3 "$vh")× | $(check "$vh" 1 '>=') |"
        echo "| router p99 ≤ nginx p99 at -c$c | $(r3 "$p99")× ($(col router.$c 3) ms vs $(col nginx.$c 3) ms) | $(check "$p99" 1 '<=') |"
        echo "| router p99 ≤ haproxy p99 at -c$c (SPEC; the issue asks only nginx's) | $(r3 "$p99h")× ($(col router.$c 3) ms vs $(col haproxy.$c 3) ms) | $(check "$p99h" 1 '<=') |"
        local vo
        vo=$(paired original.$c router.$c 1)
        echo "| original port ≥ 0.95× the router's port req/s at -c$c | $(r3 "$vo")× | $(check "$vo" 0.95 '>=') |"
    done
}

# Figures from the helpers' JSON: discovery and WebSockets.
json_figures() {
    python3 - "$W/logs/discovery" "$W/logs/ws-client" <<'EOF'
import json, statistics, sys
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))] if v else float("nan")
d = json.load(open(sys.argv[1]))
w = json.load(open(sys.argv[2]))
up, gone = d["up_ms"], d["gone_ms"]
print(f"DISC_N={len(up)} DISC_P50={pct(up, 50):.2f} DISC_P99={pct(up, 99):.2f} DISC_ERR={len(d['errors'])}")
print(f"GONE_N={len(gone)} GONE_P50={pct(gone, 50):.2f} GONE_P99={pct(gone, 99):.2f}")
print(f"WS_OPEN={w['opened']} WS_ERR={w['error_count']} WS_RSS={w['rss_kb_max'] // 1024} WS_ROUNDS={w['echo_rounds']}")
print("WS_ERRS=" + repr("; ".join(w["errors"])))
EOF
}

write_report() {
    eval "$(json_figures)"
    local r1 r1000 c1 c1000 b1 b1000 raw raw_range cost cost_range nw nn st_true_p st_true_s st_py_p st_py_s
    eval "$(scale_figures)"
    nw=$(col node.wrapped 1) nn=$(col node.native 1)
    st_true_p=$(col startup.true 1) st_true_s=$(col startup.true 2)
    st_py_p=$(col "startup.$(basename "$(python3 -c 'import sys; print(sys.executable)')")" 1)
    st_py_s=$(col "startup.$(basename "$(python3 -c 'import sys; print(sys.executable)')")" 2)
    local d_true d_py
    d_true=$(printf %.2f "$(col startup.true 3)")
    d_py=$(printf %.2f "$(col "startup.$(basename "$(python3 -c 'import sys; print(sys.executable)')")" 3)")
    cat <<EOF
# Benchmarks

Written by \`scripts/bench.sh\` — do not edit by hand; run \`sudo scripts/bench.sh\` (or as root) to refresh it.
Figures are medians of $ROUNDS runs ($SCALE_ROUNDS for the route-count rows, $STARTUP_ROUNDS for the start-up rows); in
every round the systems compared are run one after another, in an order that rotates from round to round. This
machine is shared with other work: read the load average before reading the figures.

- Date: $DATE
- Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)
- Load average (1/5/15 min): at start $LOAD_START; at end $(cut -d' ' -f1-3 /proc/loadavg)
- Versions: agentfs $("$AGENTFS" --version | awk '{print $2}') (commit $COMMIT), $(nginx -v 2>&1 | sed 's/.*: //'), haproxy $(haproxy -v | awk 'NR == 1 {print $3}'), caddy $(caddy version | awk '{print $1}'), $(wrk --version 2>&1 | awk 'NR == 1 {print $1, $2}'), node $(node --version), $(python3 --version)

## Proxy throughput and latency

Backend: nginx, 1 worker, \`return 200 "ok\n"\` on a Unix socket (and on TCP for the ceiling row). Load:
\`wrk -t1 -c<N> -d${SECS}s --latency -H 'Host: bench.localhost' http://127.0.0.1:<port>/\`. CPU µs/req is the
user+system CPU time of the proxy's processes (the backend's, for the ceiling row) divided by the requests served.
The ratios are paired: the median over rounds of the ratio between two systems' runs in the same round.

$(proxy_table)

| target | measured | |
|---|---|---|
$(proxy_checks)

Every round, in the order run (req/s / p99 ms), for the systems the targets compare. A paired ratio is the median of
the per-round ratios, so it need not equal the ratio of the medians above when the machine's speed changed between
rounds.

$(proxy_rounds)

## TLS: h2 and HTTPS/1.1

The same backend behind TLS: the router on its own port (TLS and plain HTTP share it) with the leaf its local CA
issued for \`bench.localhost\` (ECDSA P-256), nginx and haproxy with that same certificate and key file. Load:
\`h2load -t1 -c50 -m10 -D${SECS} --connect-to=127.0.0.1:<port> https://bench.localhost:<port>/\`
(h2), and the same with \`--h1\` instead of \`-m10\` (HTTPS/1.1: 50 keep-alive connections, as wrk's rows above; h2load
rather than wrk because it sends the SNI \`bench.localhost\` while connecting to 127.0.0.1, and its per-request log
gives the percentiles). Paired ratios as above.

$(tls_table)

| target | measured | |
|---|---|---|
$(tls_checks)

Handshakes only (TCP connect excluded), Python's \`ssl\` client, one at a time (\`scripts/bench/first_handshake.py\`):

| what | p50 | p99 | target | |
|---|---:|---:|---|---|
$(first_handshake_rows)

## Route table size

Per-request cost through the router with 1 route and with $SCALE_N instances registered (bare sockets of
one app, moved into \`run/\` and out again; which count goes first alternates), \`wrk -t1 -c50\` to \`main.bench.localhost\`.

| routes | req/s | p99 ms | router CPU µs/req | backend CPU µs/req |
|---:|---:|---:|---:|---:|
| 1 | $r1 | $(col routes.1 3) | $c1 | $b1 |
| $SCALE_N | $r1000 | $(col routes.$SCALE_N 3) | $c1000 | $b1000 |

Cost per request with $SCALE_N routes vs 1 (target: within ±5%), the median over rounds of each round's change:

| measure | change | rounds, lowest … highest | |
|---|---:|---:|---|
| router CPU per request | ${raw}% | $raw_range % | $(check "$(abs "$raw")" 5 '<=') |
| router CPU per request in units of the backend's | ${cost}% | $cost_range % | $(check "$(abs "$cost")" 5 '<=') |

The second cancels the speed of this shared machine at the moment of each run, which moves the raw CPU figures of
every process together by several percent (the backend does the same work whatever the route count); the first
does not hide a router that got slower (which would make the backend's batches smaller and its CPU per request
higher). Both must pass.

## Memory

| what | measured | target | |
|---|---:|---:|---|
| idle RSS (just started, no routes) | $((IDLE_RSS / 1024)) MB | ≤ 15 MB | $(check "$IDLE_RSS" 15360 '<=') |
| RSS with $SCALE_N instances registered | $((SCALE_RSS / 1024)) MB | | |
| $WS_N WebSocket tunnels held ${WS_HOLD}s: opened / errors | $WS_OPEN / $WS_ERR | $WS_N / 0 | $( [ "$WS_OPEN" = "$WS_N" ] && [ "$WS_ERR" = 0 ] && echo met || echo "**missed**") |
| RSS while they are open (max) | $WS_RSS MB | | |

The tunnels go to a Node server that answers every Upgrade with 101 and echoes bytes (\`scripts/bench/ws_backend.js\`);
\`scripts/bench/ws_hold.py\` opens them, checks that each one echoes $WS_ROUNDS times over the ${WS_HOLD}s, and samples
the router's RSS.${WS_ERRS:+ First errors: $WS_ERRS}

## Discovery

A Python HTTP server (\`scripts/bench/srv.py\`) started under the shim (\`LD_PRELOAD\`, \`AGENTFS_APP=disc\`) takes
CLOCK_MONOTONIC just before \`listen()\`; \`scripts/bench/discovery.py\` polls the router for its host meanwhile
(kept-alive connection, 0.2 ms apart) and takes the time of the first 200. Then it SIGKILLs (and reaps) the server and
polls the router's \`/api/routes\` until the instance is gone. $DISC_N listeners.

| what | p50 | p99 | target | |
|---|---:|---:|---|---|
| listen() → first routed 200 | $DISC_P50 ms | $DISC_P99 ms | p50 ≤ 5 ms, p99 ≤ 50 ms | $(both "$(check "$DISC_P50" 5 '<=')" "$(check "$DISC_P99" 50 '<=')" "$(check "$DISC_ERR" 0 '==')") |
| SIGKILL → route gone | $GONE_P50 ms | $GONE_P99 ms | p50 ≤ 100 ms | $(check "$GONE_P50" 100 '<=') |

## Shim overhead

The same Node server (\`scripts/bench/node_server.js\`) run by \`agentfs wrap --no-router -- node node_server.js 3000\`
(the shim turns port 3000 into a Unix socket) and run natively with \`server.listen('<run>/nodenative.main.3000.sock')\`;
both reached through the router, \`wrk -t1 -c50\`.

| | req/s | p99 ms |
|---|---:|---:|
| wrapped (shim) | $nw | $(col node.wrapped 3) |
| native UDS | $nn | $(col node.native 3) |
| ratio | $(ratio "$nw" "$nn") (target ≥ 0.95: $(check "$(ratio "$nw" "$nn")" 0.95 '>=')) | |

Process start-up, \`hyperfine -N --warmup 5 --runs $STARTUP_RUNS\`, \`env [LD_PRELOAD=<shim> AGENTFS_APP=startup ...] <program>\`,
in $STARTUP_ROUNDS rounds that alternate which goes first: the medians of the rounds' medians, and the overhead as the
median of the rounds' differences:

| program | without shim | with shim | overhead (target ≤ 2 ms) | rounds' differences, lowest … highest |
|---|---:|---:|---:|---:|
| /bin/true | $st_true_p ms | $st_true_s ms | $d_true ms ($(check "$d_true" 2 '<=')) | $(spread startup.true 3) ms |
| python3 -c pass | $st_py_p ms | $st_py_s ms | $d_py ms ($(check "$d_py" 2 '<=')) | $(spread "startup.$(basename "$(python3 -c 'import sys; print(sys.executable)')")" 3) ms |

## Configurations

nginx (proxy; its workers run as root only because run/ is 0700 and the benchmark runs as root):
\`\`\`nginx
$(grep -v '^$' "$W/ngx-proxy/nginx.conf" | sed "s#$W#<tmp>#g")
\`\`\`
haproxy:
\`\`\`
$(sed "s#$W#<tmp>#g" "$W/haproxy.cfg")
\`\`\`
nginx and haproxy terminating TLS (the TLS rows):
\`\`\`nginx
$(grep -v '^$' "$W/ngx-tls/nginx.conf" | sed "s#$W#<tmp>#g")
\`\`\`
\`\`\`
$(sed "s#$W#<tmp>#g" "$W/haproxy-tls.cfg")
\`\`\`
caddy:
\`\`\`
$(sed "s#$W#<tmp>#g" "$W/caddy/Caddyfile")
\`\`\`
agentfs router: \`AGENTFS_HOME=<tmp>/h agentfs router run --port $P_ROUTER\`; the backend's socket is
\`<tmp>/h/run/bench.main.3000.sock\` (a bare socket, found by the rescan).
EOF
}

# ---------------------------------------------------------------- main
main() {
    case ${BENCH_ONLY:-} in
    "" | proxy | tls | shim | scale | startup) ;;
    *) die "BENCH_ONLY: expected proxy, tls, shim, scale or startup, got $BENCH_ONLY" ;;
    esac
    install_tools
    ulimit -n "$(ulimit -Hn)"
    say "building (release)"
    cargo build --release --quiet
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- router registry shim cli 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
    local target=${CARGO_TARGET_DIR:-$root/target}
    AGENTFS=$target/release/agentfs
    SHIM=$(ls -t "$target"/release/build/agentfs-*/out/libagentfs_shim.so 2>/dev/null | head -n 1)
    [ -n "$SHIM" ] || die "no libagentfs_shim.so under $target/release/build"
    DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    W=$(mktemp -d /tmp/afb.XXXXXX)
    chmod 700 "$W"
    mkdir -p "$W/logs" "$W/res"
    H=$W/h RUN=$W/h/run
    mkdir -p "$RUN"
    chmod 700 "$H" "$RUN"
    BACKEND_SOCK=$RUN/bench.main.3000.sock
    write_configs
    start_all
    case ${BENCH_ONLY:-} in
    proxy)
        proxy_phase
        proxy_table
        proxy_checks
        proxy_rounds
        return
        ;;
    tls)
        tls_phase
        tls_table
        tls_checks
        first_handshake_rows
        return
        ;;
    shim)
        shim_phase
        echo "wrapped $(col node.wrapped 1) req/s, native $(col node.native 1) req/s, ratio $(ratio "$(col node.wrapped 1)" "$(col node.native 1)")"
        return
        ;;
    startup)
        startup_phase
        local f
        for f in "$W"/res/startup.*; do
            echo "${f##*/startup.}: without $(col "${f##*/}" 1) ms, with the shim $(col "${f##*/}" 2) ms, overhead $(col "${f##*/}" 3) ms"
        done
        return
        ;;
    scale)
        scale_phase
        local r1 r1000 c1 c1000 b1 b1000 raw raw_range cost cost_range
        eval "$(scale_figures)"
        echo "router CPU µs/req (backend's): 1 route $c1 ($b1), $SCALE_N routes $c1000 ($b1000):" \
            "change $raw% ($raw_range), in the backend's units $cost% ($cost_range)"
        return
        ;;
    esac
    scale_phase
    proxy_phase
    tls_phase
    shim_phase
    discovery_phase
    ws_phase
    startup_phase
    write_report >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
    say "wrote $OUT"
}

main "$@"
