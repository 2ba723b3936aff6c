# Sourced by scripts/bench.sh: the TLS phase (issue 18). The router
# terminates TLS on its own port with a leaf of its local CA; nginx and
# haproxy terminate it with that same certificate and key (ECDSA P-256,
# exact name bench.localhost) in front of the same Unix-socket backend.
# Load: h2load, both for h2 (-m 10 streams per connection, as a browser
# loading many modules) and for HTTPS/1.1 (--h1): unlike wrk it can send
# the SNI bench.localhost while connecting to 127.0.0.1 (--connect-to),
# and its per-request log gives the p50/p99. Each run prints the columns
# of wrk_once: req/s p50_ms p99_ms errors cpu_us_per_req.

P_NGINX_TLS=$((BASE + 5)) P_HAPROXY_TLS=$((BASE + 6))
TLS_SYSTEMS=(router nginx haproxy)
TLS_MODES=(h2 h1)
TLS_HOST=bench.localhost

# Has the router issue the leaf (it issues for hosts it routes), then
# writes the nginx and haproxy TLS front ends with that certificate.
tls_configs() {
    curl -s -o /dev/null --cacert "$H/ca/root.pem" --resolve "$TLS_HOST:$P_ROUTER:127.0.0.1" \
        "https://$TLS_HOST:$P_ROUTER/" || die "the router answers no HTTPS (see $W/logs/router)"
    local leaf
    leaf=$(ls "$H"/ca/hosts/"$TLS_HOST".*.pem 2>/dev/null | head -n 1)
    [ -n "$leaf" ] || die "the router wrote no leaf for $TLS_HOST in $H/ca/hosts"
    mkdir -p "$W/tls"
    cp "$leaf" "$W/tls/bench.pem"
    mkdir -p "$W/ngx-tls"
    nginx_proxy_conf ngx-tls "listen 127.0.0.1:$P_NGINX_TLS ssl http2;" "ssl_certificate $W/tls/bench.pem;" \
        "ssl_certificate_key $W/tls/bench.pem;" "ssl_protocols TLSv1.2 TLSv1.3;" "http2_max_requests 1000000;" \
        >"$W/ngx-tls/nginx.conf"
    haproxy_conf "bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $W/tls/bench.pem alpn h2,http/1.1" >"$W/haproxy-tls.cfg"
}

tls_start() {
    tls_configs
    start nginx-tls nginx -e "$W/logs/nginx-tls.err" -p "$W/ngx-tls" -c "$W/ngx-tls/nginx.conf"
    PID_NGINX_TLS=$LAST_PID
    start haproxy-tls haproxy -db -f "$W/haproxy-tls.cfg"
    PID_HAPROXY_TLS=$LAST_PID
    local p i
    for p in "$P_ROUTER" "$P_NGINX_TLS" "$P_HAPROXY_TLS"; do
        for i in $(seq 1 200); do
            curl -s -o /dev/null -f --cacert "$H/ca/root.pem" --resolve "$TLS_HOST:$p:127.0.0.1" \
                "https://$TLS_HOST:$p/" && break
            sleep 0.05
        done
        [ "$i" -lt 200 ] || die "no HTTPS answer on port $p; logs in $W/logs"
    done
}

tls_target_of() {
    case $1 in
    router) echo "$P_ROUTER $PID_ROUTER" ;;
    nginx) echo "$P_NGINX_TLS $PID_NGINX_TLS" ;;
    haproxy) echo "$P_HAPROXY_TLS $PID_HAPROXY_TLS" ;;
    esac
}

h2load_once() { # port mode cpu-pid
    local before after out log=$W/res/h2load.log
    local flags=(-c 50 -m 10)
    [ "$2" = h1 ] && flags=(-c 50 --h1)
    rm -f "$log"
    before=$(cpu_ticks "$3")
    out=$(h2load "${flags[@]}" -t 1 -D "$SECS" --log-file="$log" \
        --connect-to="127.0.0.1:$1" "https://$TLS_HOST:$1/" 2>&1 || true)
    after=$(cpu_ticks "$3")
    printf '%s\n' "$out" >>"$W/logs/h2load-all"
    local errors
    errors=$(printf '%s\n' "$out" | awk '/^requests:/ { gsub(/,/, ""); print $10 + $12 + $14 }')
    printf '%s\n' "$out" | awk '/^status codes:/ { gsub(/,/, ""); print $5 + $7 + $9 }' >"$W/res/h2load.non2xx"
    local rps
    rps=$(printf '%s\n' "$out" | awk '/^finished in/ { gsub(/,/, ""); print $4 }')
    sort -n -k3,3 "$log" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        -v errs="${errors:-0}" -v rps="${rps:-0}" -v non2xx="$(cat "$W/res/h2load.non2xx")" '
        { d[NR] = $3 / 1000 }
        END {
            n = NR
            p50 = n ? d[int(n * 0.50) + 1] : 0
            p99 = n ? d[int(n * 0.99) + 1] : 0
            printf "%.0f %.3f %.3f %d %.2f\n", rps, p50, p99, errs + non2xx, (n ? ticks * 1e6 / hz / n : 0)
        }'
}

# First handshakes: N new instances (bare sockets, routed by name), each
# host's first handshake (a leaf signed then) and a second one (cached).
first_handshake_phase() {
    local n=200 i
    mkdir -p "$W/tlsnew"
    start tls-holder python3 "$here/hold_sockets.py" "$W/tlsnew" bench t "$n"
    local holder=$LAST_PID
    for i in $(seq 1 200); do grep -q ready "$W/logs/tls-holder" && break; sleep 0.05; done
    find "$W/tlsnew" -name '*.sock' -exec mv -t "$RUN" {} +
    rescan
    wait_routed "t$(printf %04d $((n - 1)))"
    python3 "$here/first_handshake.py" "$P_ROUTER" "$H/ca/root.pem" bench t "$n" >"$W/res/first_handshake.json"
    find "$RUN" -name 'bench.t*.sock' -delete
    rescan
    stop_pid "$holder"
    eval "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(" ".join(f"HS_{k.upper()}={v:.2f}" if k != "n" else f"HS_N={v}" for k, v in d.items()))' "$W/res/first_handshake.json")"
}

first_handshake_rows() {
    echo "| first TLS handshake of a new host (leaf signed then), $HS_N hosts | $HS_FIRST_P50 ms | $HS_FIRST_P99 ms | p50 ≤ 10 ms | $(check "$HS_FIRST_P50" 10 '<=') |"
    echo "| later handshakes of those hosts (cached leaf) | $HS_AGAIN_P50 ms | $HS_AGAIN_P99 ms | | |"
}

tls_phase() {
    tls_start
    first_handshake_phase
    local mode r i n=${#TLS_SYSTEMS[@]} sys port pid
    for mode in "${TLS_MODES[@]}"; do
        for sys in "${TLS_SYSTEMS[@]}"; do
            read -r port pid <<<"$(tls_target_of "$sys")"
            h2load_once "$port" "$mode" "$pid" >/dev/null
        done
        for ((r = 0; r < ROUNDS; r++)); do
            for ((i = 0; i < n; i++)); do
                sys=${TLS_SYSTEMS[$(((i + r) % n))]}
                read -r port pid <<<"$(tls_target_of "$sys")"
                say "TLS $mode round $((r + 1))/$ROUNDS: $sys"
                h2load_once "$port" "$mode" "$pid" >>"$W/res/tls-$sys.$mode"
            done
        done
    done
}

tls_label() { case $1 in h2) echo "h2 (-c50 -m10)" ;; h1) echo "HTTPS/1.1 (-c50)" ;; esac; }

tls_table() {
    local mode sys label
    echo "| protocol | system | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s vs nginx | req/s vs haproxy |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for mode in "${TLS_MODES[@]}"; do
        for sys in "${TLS_SYSTEMS[@]}"; do
            label=$sys
            [ "$sys" = router ] && label="**agentfs router**"
            echo "| $(tls_label "$mode") | $label | $(col "tls-$sys.$mode" 1) | $(col "tls-$sys.$mode" 2) | $(col "tls-$sys.$mode" 3) | $(col "tls-$sys.$mode" 5) | $(errs "tls-$sys.$mode") | $(r3 "$(paired "tls-$sys.$mode" "tls-nginx.$mode" 1)") | $(r3 "$(paired "tls-$sys.$mode" "tls-haproxy.$mode" 1)") |"
        done
    done
}

tls_checks() {
    local mode vn vh p99
    for mode in "${TLS_MODES[@]}"; do
        vn=$(paired "tls-router.$mode" "tls-nginx.$mode" 1)
        vh=$(paired "tls-router.$mode" "tls-haproxy.$mode" 1)
        p99=$(paired "tls-router.$mode" "tls-nginx.$mode" 3)
        echo "| router ≥ 1.0× nginx req/s, $(tls_label "$mode") | $(r3 "$vn")× | $(check "$vn" 1 '>=') |"
        echo "| router ≥ 1.0× haproxy req/s, $(tls_label "$mode") | $(r3 "$vh")× | $(check "$vh" 1 '>=') |"
        echo "| router p99 ≤ nginx p99, $(tls_label "$mode") | $(r3 "$p99")× ($(col "tls-router.$mode" 3) ms vs $(col "tls-nginx.$mode" 3) ms) | $(check "$p99" 1 '<=') |"
    done
}
