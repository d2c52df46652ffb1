# proxy-probe.sh: measure the Service traffic gap on a node while its kube-proxy switches.
#
# NB_PROBE_ACTION=start: a background loop connects to NB_PROBE_TARGET (ADDR:PORT, e.g.
#   the kubernetes Service's ClusterIP:443) every NB_PROBE_INTERVAL_MS (default 100) with a
#   NB_PROBE_TIMEOUT_MS (default 300) connect timeout, at most NB_PROBE_MAX times (default
#   1200) and for at most NB_PROBE_MAX_SECONDS (default 300), writing one line per probe to
#   NB_PROBE_DIR (default /run/nodeboot-probe). Facts: pid.
# NB_PROBE_ACTION=stop: ends that loop (by its pid file) and reports: probes, failures,
#   longest_failure_run (consecutive failed probes), longest_gap_ms (from the first failure of
#   that run to the next success, or to the last probe), first_failure_ms (since the start).
# Bounded in count and time: a probe loop nobody stops ends by itself.
# shellcheck disable=SC2016 # the inner bash -c scripts expand their own arguments
NB_SCRIPT=proxy-probe.sh

probe_loop() {
    local target=$1 interval=$2 tmo=$3 max=$4 until=$5 out=$6 n=0 now addr=${1%:*} port=${1##*:}
    addr=${addr#[}
    addr=${addr%]}
    while ((n < max)); do
        now=$(date +%s%3N)
        ((now < until)) || break
        if timeout "$tmo" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$addr" "$port" 2>/dev/null; then
            echo "$now 1" >>"$out"
        else
            echo "$now 0" >>"$out"
        fi
        n=$((n + 1))
        sleep "$interval"
    done
    : "$target"
}

start() {
    local target=${NB_PROBE_TARGET:-} interval_ms=${NB_PROBE_INTERVAL_MS:-100} tmo_ms=${NB_PROBE_TIMEOUT_MS:-300}
    local max=${NB_PROBE_MAX:-1200} max_s=${NB_PROBE_MAX_SECONDS:-300} until pid
    [[ $target == *:* ]] || nb_die "NB_PROBE_TARGET must be ADDR:PORT, got '$target'"
    for v in "$interval_ms" "$tmo_ms" "$max" "$max_s"; do
        [[ $v =~ ^[0-9]+$ ]] || nb_die "probe settings must be whole numbers, got '$v'"
    done
    stop_loop
    mkdir -p "$DIR"
    : >"$DIR/results"
    until=$(($(date +%s%3N) + max_s * 1000))
    setsid bash -c "$(declare -f probe_loop); probe_loop \"\$@\"" _ "$target" \
        "$(printf '%d.%03d' $((interval_ms / 1000)) $((interval_ms % 1000)))" \
        "$(printf '%d.%03d' $((tmo_ms / 1000)) $((tmo_ms % 1000)))" "$max" "$until" "$DIR/results" \
        </dev/null >/dev/null 2>&1 3>&- &
    pid=$!
    echo "$pid" >"$DIR/pid"
    nb_fact pid "$pid"
    nb_changed "probe $target every ${interval_ms}ms (pid $pid)"
}

stop_loop() {
    local pid
    [[ -f $DIR/pid ]] || return 0
    read -r pid <"$DIR/pid" || true
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
    rm -f "$DIR/pid"
}

stop() {
    local summary
    stop_loop
    [[ -f $DIR/results ]] || nb_die "no probe results in $DIR (was the probe started?)"
    summary=$(awk '
        NR == 1 { start = $1 }
        { n++; last = $1 }
        $2 == 0 { f++; if (run == 0) { run_start = $1; if (first == "") first = $1 - start }; run++
                  if (run > longest) { longest = run } }
        $2 == 1 { if (run > 0) { gap = $1 - run_start; if (gap > longest_gap) longest_gap = gap }; run = 0 }
        END {
            if (run > 0) { gap = last - run_start; if (gap > longest_gap) longest_gap = gap }
            printf "%d %d %d %d %s\n", n, f, longest, longest_gap, (first == "" ? "null" : first)
        }' "$DIR/results")
    read -r probes failures longest gap first <<<"$summary"
    nb_fact probes "$probes"
    nb_fact failures "$failures"
    nb_fact longest_failure_run "$longest"
    nb_fact longest_gap_ms "$gap"
    nb_fact first_failure_ms "$first"
    rm -f "$DIR/results"
}

main() {
    export LC_ALL=C
    DIR=${NB_PROBE_DIR:-/run/nodeboot-probe}
    case ${NB_PROBE_ACTION:-} in
        start) start ;;
        stop) stop ;;
        *) nb_die "NB_PROBE_ACTION must be start or stop, got '${NB_PROBE_ACTION:-}'" ;;
    esac
    nb_ok
}

main </dev/null
