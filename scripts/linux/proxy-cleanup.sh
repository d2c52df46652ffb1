#!/usr/bin/env bash
# proxy-cleanup.sh: remove what a kube-proxy mode left on a Linux host, and only that.
#
# Inputs (NB_* variables, exported ahead of this script on stdin):
#   NB_CLEAN_MODES          space-separated subset of "ipvs iptables nftables": the modes
#                           whose leftovers to remove (unset: all three; empty: none)
#   NB_PROXY_MODE_NOW       the mode kube-proxy runs now on this node (iptables | ipvs |
#                           nftables), after a mode switch: what that mode uses is kept even
#                           when an old mode owned it too (IPVS mode uses KUBE-SERVICES,
#                           KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD and
#                           KUBE-PROXY-FIREWALL as iptables mode does).
#                           Empty or unset: the node is leaving the cluster (reset); then
#                           cleaning iptables also sweeps every other KUBE-* chain (kubelet's
#                           KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and
#                           every KUBE-* ipset.
#   NB_REMOVE_MODULES_FILE  0 | 1  also remove NB_MODULES_FILE, but only if it carries the
#                           marker proxy-prereqs.sh writes                   (default 0)
#   NB_MODULES_FILE         default /etc/modules-load.d/nodeboot-ipvs.conf
#   NB_DRY_RUN              0 | 1  report what would be removed, remove nothing  (default 0)
#
# What each mode owns (kube-proxy v1.37 source, pkg/proxy/{iptables,ipvs,nftables};
# docs/proxy-modes.md has the table and the transitions kube-proxy cleans itself):
#   iptables  nat: KUBE-SERVICES KUBE-NODEPORTS KUBE-POSTROUTING KUBE-MARK-MASQ
#                  KUBE-PROXY-CANARY KUBE-SVC-* KUBE-SVL-* KUBE-SEP-* KUBE-FW-* KUBE-EXT-*
#             filter: KUBE-SERVICES KUBE-EXTERNAL-SERVICES KUBE-FORWARD KUBE-NODEPORTS
#                  KUBE-PROXY-FIREWALL KUBE-PROXY-CANARY;  mangle: KUBE-PROXY-CANARY
#   ipvs      nat: KUBE-SERVICES KUBE-POSTROUTING KUBE-NODE-PORT KUBE-LOAD-BALANCER KUBE-MARK-MASQ
#             filter: KUBE-FORWARD KUBE-NODE-PORT KUBE-PROXY-FIREWALL KUBE-SOURCE-RANGES-FIREWALL
#                  KUBE-IPVS-FILTER KUBE-IPVS-OUT-FILTER; its ipsets (KUBE-6-* for IPv6);
#                  the IPVS virtual servers of its VIPs and NodePorts; the link kube-ipvs0
#   nftables  the tables "ip kube-proxy" and "ip6 kube-proxy"
# plus, for the iptables-based modes, the jumps into those chains from the built-in
# chains, told apart by kube-proxy's comment on each.
#
# Output: human text on stderr, then exactly one JSON line on stdout:
#   {"ok":bool,"changed":bool,"facts":{...},"error":"..."}
# facts: modes, now_mode, dry_run, iptables_chains_removed, iptables_rules_removed,
#   iptables_chains_kept (kube-proxy chains kept because the mode now running uses them
#   or a foreign rule still jumps to them), ipvs_virtual_servers_removed,
#   ipvs_virtual_servers_foreign, kube_ipvs0_removed, ipsets_removed, nft_tables_removed
#   (["ip kube-proxy", ...]), modules_file, modules_file_removed,
#   modules_file_written_by_nodeboot, actions (what was removed, or would be).
#
# iptables changes go through one `iptables-restore --noflush` per family: it names
# only the chains to flush and delete and the rules to delete, so nothing else in the
# tables is rewritten (no stale copy of other components' rules is restored over
# theirs). If kube-proxy changed the tables in between and the restore fails, the
# dump is read again and the restore retried once.
#
# Nothing here loads a kernel module: a subsystem whose module is not loaded
# (per lsmod) cannot hold kube-proxy state, and asking its tool (ipvsadm,
# ipset, nft) would load it.
# Commands are called by plain name: the lab and the unit tests put stand-ins first on PATH.
# Everything runs inside main(), called with stdin from /dev/null, because
# bash reads this very script from stdin.

MARKER='# managed-by: nodeboot proxy-prereqs.sh'

NB_SCRIPT=proxy-cleanup.sh

declare -a FAILURES=()

# fail "why": a removal that did not work; the rest still runs, the result is ok=false.
fail() {
    FAILURES+=("$1")
    echo "proxy-cleanup: error: $1" >&2
}

# apply "what" CMD...: remove something, and count it as a change only once it
# is gone (in a dry run: only say so).
apply() {
    local what=$1
    shift
    if [[ $DRY_RUN == 0 ]] && ! "$@" >&2; then
        return 1
    fi
    nb_changed "$what"
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# ---- what each mode owns --------------------------------------------------
# "table chain" per line; a trailing * is a prefix.
IPTABLES_CHAINS='nat KUBE-SERVICES
nat KUBE-NODEPORTS
nat KUBE-POSTROUTING
nat KUBE-MARK-MASQ
nat KUBE-PROXY-CANARY
nat KUBE-SVC-*
nat KUBE-SVL-*
nat KUBE-SEP-*
nat KUBE-FW-*
nat KUBE-EXT-*
filter KUBE-SERVICES
filter KUBE-EXTERNAL-SERVICES
filter KUBE-FORWARD
filter KUBE-NODEPORTS
filter KUBE-PROXY-FIREWALL
filter KUBE-PROXY-CANARY
mangle KUBE-PROXY-CANARY'
IPVS_CHAINS='nat KUBE-SERVICES
nat KUBE-POSTROUTING
nat KUBE-NODE-PORT
nat KUBE-LOAD-BALANCER
nat KUBE-MARK-MASQ
filter KUBE-FORWARD
filter KUBE-NODE-PORT
filter KUBE-PROXY-FIREWALL
filter KUBE-SOURCE-RANGES-FIREWALL
filter KUBE-IPVS-FILTER
filter KUBE-IPVS-OUT-FILTER'
# Jumps from built-in chains: "table|chain|target|comment".
IPTABLES_JUMPS='filter|INPUT|KUBE-EXTERNAL-SERVICES|kubernetes externally-visible service portals
filter|FORWARD|KUBE-EXTERNAL-SERVICES|kubernetes externally-visible service portals
filter|INPUT|KUBE-NODEPORTS|kubernetes health check service ports
filter|FORWARD|KUBE-SERVICES|kubernetes service portals
filter|OUTPUT|KUBE-SERVICES|kubernetes service portals
filter|FORWARD|KUBE-FORWARD|kubernetes forwarding rules
filter|INPUT|KUBE-PROXY-FIREWALL|kubernetes load balancer firewall
filter|OUTPUT|KUBE-PROXY-FIREWALL|kubernetes load balancer firewall
filter|FORWARD|KUBE-PROXY-FIREWALL|kubernetes load balancer firewall
nat|OUTPUT|KUBE-SERVICES|kubernetes service portals
nat|PREROUTING|KUBE-SERVICES|kubernetes service portals
nat|POSTROUTING|KUBE-POSTROUTING|kubernetes postrouting rules'
IPVS_JUMPS='nat|OUTPUT|KUBE-SERVICES|kubernetes service portals
nat|PREROUTING|KUBE-SERVICES|kubernetes service portals
nat|POSTROUTING|KUBE-POSTROUTING|kubernetes postrouting rules
filter|FORWARD|KUBE-FORWARD|kubernetes forwarding rules
filter|INPUT|KUBE-NODE-PORT|kubernetes health check rules
filter|INPUT|KUBE-PROXY-FIREWALL|kube-proxy firewall rules
filter|FORWARD|KUBE-PROXY-FIREWALL|kube-proxy firewall rules
filter|INPUT|KUBE-IPVS-FILTER|kubernetes ipvs access filter
filter|OUTPUT|KUBE-IPVS-OUT-FILTER|kubernetes ipvs access filter'
IPVS_IPSETS='KUBE-LOOP-BACK KUBE-CLUSTER-IP KUBE-EXTERNAL-IP KUBE-EXTERNAL-IP-LOCAL
KUBE-LOAD-BALANCER KUBE-LOAD-BALANCER-LOCAL KUBE-LOAD-BALANCER-FW KUBE-LOAD-BALANCER-SOURCE-IP
KUBE-LOAD-BALANCER-SOURCE-CIDR KUBE-NODE-PORT-TCP KUBE-NODE-PORT-LOCAL-TCP KUBE-NODE-PORT-UDP
KUBE-NODE-PORT-LOCAL-UDP KUBE-NODE-PORT-SCTP-HASH KUBE-NODE-PORT-LOCAL-SCTP-HASH
KUBE-HEALTH-CHECK-NODE-PORT KUBE-IPVS-IPS'

mode_chains() {
    case $1 in iptables) printf '%s\n' "$IPTABLES_CHAINS" ;; ipvs) printf '%s\n' "$IPVS_CHAINS" ;; esac
}
mode_jumps() {
    case $1 in iptables) printf '%s\n' "$IPTABLES_JUMPS" ;; ipvs) printf '%s\n' "$IPVS_JUMPS" ;; esac
}

# ---- inputs ---------------------------------------------------------------
read_inputs() {
    local mode
    MODES=${NB_CLEAN_MODES-ipvs iptables nftables}
    NOW=${NB_PROXY_MODE_NOW:-}
    REMOVE_FILE=${NB_REMOVE_MODULES_FILE:-0}
    DRY_RUN=${NB_DRY_RUN:-0}
    MODULES_FILE=${NB_MODULES_FILE:-/etc/modules-load.d/nodeboot-ipvs.conf}
    nb_flag NB_REMOVE_MODULES_FILE "$REMOVE_FILE"
    nb_flag NB_DRY_RUN "$DRY_RUN"
    read -r -a MODE_LIST <<<"$MODES"
    for mode in "${MODE_LIST[@]}"; do
        case $mode in
            ipvs | iptables | nftables) ;;
            *) nb_die "NB_CLEAN_MODES has '$mode'; expected a subset of: ipvs iptables nftables" ;;
        esac
    done
    case $NOW in
        "" | ipvs | iptables | nftables) ;;
        *) nb_die "NB_PROXY_MODE_NOW is '$NOW'; expected iptables, ipvs or nftables (or empty on reset)" ;;
    esac
    [[ $MODULES_FILE == /* ]] || nb_die "NB_MODULES_FILE must be an absolute path, got '$MODULES_FILE'"
    NB_SAY_PREFIX=""
    if [[ $DRY_RUN == 1 ]]; then NB_SAY_PREFIX="(dry run) would "; fi
    nb_fact_list modes "${MODE_LIST[@]}"
    nb_fact_str now_mode "$NOW"
    nb_fact_bool dry_run "$DRY_RUN"
}

# cleaning MODE: MODE's leftovers are to go (asked for, and not the mode running now).
cleaning() {
    local mode
    [[ $1 != "$NOW" ]] || return 1
    for mode in "${MODE_LIST[@]}"; do
        if [[ $mode == "$1" ]]; then return 0; fi
    done
    return 1
}

# The node is leaving the cluster: kubelet's KUBE-* chains and any KUBE-* ipset go too.
sweeping() {
    [[ -z $NOW ]] && cleaning iptables
}

# ---- iptables -------------------------------------------------------------
CHAINS_REMOVED=0
RULES_REMOVED=0
declare -a CHAINS_KEPT=()

# The plan for one iptables-save dump, by awk: which KUBE-* chains go (owned by a
# mode being cleaned and not by the mode running now) and which rules go with them
# (theirs, jumps into them, and old-mode jumps into chains the new mode keeps).
# Prints "restore" lines (the --noflush restore input), "count CHAINS RULES",
# "kept TABLE/CHAIN why" and "say TEXT" lines.
# shellcheck disable=SC2016 # awk program, not shell
PLAN_AWK='
function owned(list, table, chain,    n, i, f, pat) {
    n = split(list, lines, "\n")
    for (i = 1; i <= n; i++) {
        split(lines[i], f, " ")
        if (f[1] != table) continue
        pat = f[2]
        if (substr(pat, length(pat)) == "*") {
            if (index(chain, substr(pat, 1, length(pat) - 1)) == 1) return 1
        } else if (pat == chain) return 1
    }
    return 0
}
function comment_of(rule,    m) {
    if (match(rule, /--comment "[^"]*"/)) return substr(rule, RSTART + 11, RLENGTH - 12)
    if (match(rule, /--comment [^ ]+/)) return substr(rule, RSTART + 10, RLENGTH - 10)
    return ""
}
function target_of(rule,    n, i, w) {
    n = split(rule, w, " ")
    for (i = 1; i < n; i++) if (w[i] == "-j" || w[i] == "-g") return w[i + 1]
    return ""
}
BEGIN { nt = 0 }
/^\*/ { table = substr($0, 2); tables[++nt] = table; next }
/^:/ {
    chain = substr($1, 2)
    nchains[table]++; chains[table, nchains[table]] = chain
    builtin[table, chain] = ($2 != "-")
    next
}
/^-A / { nrules[table]++; rules[table, nrules[table]] = $0; rulechain[table, nrules[table]] = $2; next }
END {
    total_chains = 0; total_rules = 0
    for (t = 1; t <= nt; t++) {
        T = tables[t]
        for (i = 1; i <= nchains[T]; i++) {
            C = chains[T, i]
            if (builtin[T, C] || index(C, "KUBE-") != 1) continue
            if (owned(keep, T, C)) { kube[T, C] = 1; if (owned(remove, T, C)) shared[T, C] = 1; continue }
            if (owned(remove, T, C) || sweep) { gone[T, C] = 1; kube[T, C] = 1 }
            else if (owned(allmodes, T, C)) kube[T, C] = 1
        }
        # A foreign chain that still jumps into a chain keeps that chain: its rule is not ours to delete.
        for (i = 1; i <= nrules[T]; i++) {
            C = rulechain[T, i]; X = target_of(rules[T, i])
            if (gone[T, X] && !builtin[T, C] && !kube[T, C]) {
                delete gone[T, X]
                print "kept " T "/" X " a rule in the foreign chain " C " jumps to it"
            }
        }
        out = ""; nch = 0; nru = 0; dels = ""; xs = ""
        for (i = 1; i <= nchains[T]; i++) {
            C = chains[T, i]
            if (gone[T, C]) { out = out ":" C " - [0:0]\n"; xs = xs "-X " C "\n"; nch++ }
            else if (shared[T, C]) print "kept " T "/" C " the mode running now uses it"
        }
        for (i = 1; i <= nrules[T]; i++) {
            C = rulechain[T, i]; R = rules[T, i]; X = target_of(R)
            if (gone[T, C]) { nru++; continue }
            sig = T "|" C "|" X "|" comment_of(R)
            if (gone[T, X] || (builtin[T, C] && kube[T, X] && index(jremove, "\n" sig "\n") && !index(jkeep, "\n" sig "\n"))) {
                dels = dels "-D" substr(R, 3) "\n"; nru++
            }
        }
        if (nch + nru == 0) continue
        print "restore *" T
        n = split(out dels xs, lines2, "\n")
        for (j = 1; j < n; j++) print "restore " lines2[j]
        print "restore COMMIT"
        print "say " T ": " nch " chains, " nru " rules"
        total_chains += nch; total_rules += nru
    }
    print "count " total_chains " " total_rules
}'

# plan_family DUMP: the awk plan for one iptables-save dump.
plan_family() {
    local mode remove="" keep="" all="" jremove="" jkeep=""
    for mode in iptables ipvs; do
        all+="$(mode_chains "$mode")"$'\n'
        if cleaning "$mode"; then
            remove+="$(mode_chains "$mode")"$'\n'
            jremove+="$(mode_jumps "$mode")"$'\n'
        fi
    done
    if [[ $NOW == iptables || $NOW == ipvs ]]; then
        keep="$(mode_chains "$NOW")"
        jkeep="$(mode_jumps "$NOW")"
    fi
    awk -v remove="$remove" -v keep="$keep" -v allmodes="$all" -v sweep="$(sweeping && echo 1 || echo 0)" \
        -v jremove=$'\n'"$jremove"$'\n' -v jkeep=$'\n'"$jkeep"$'\n' "$PLAN_AWK" <<<"$1"
}

clean_iptables_family() {
    local family=$1 attempt dump plan line restore chains rules what
    for attempt in 1 2; do
        dump=$("$family-save") || { fail "$family-save failed"; return 0; }
        plan=$(plan_family "$dump") || { fail "cannot read the $family-save dump"; return 0; }
        restore="" chains=0 rules=0 what=()
        while IFS= read -r line; do
            case $line in
                "restore "*) restore+="${line#restore }"$'\n' ;;
                "count "*) read -r _ chains rules <<<"$line" ;;
                "say "*) what+=("${line#say }") ;;
                "kept "*)
                    if ((attempt == 1)); then
                        CHAINS_KEPT+=("$family ${line#kept }")
                        echo "proxy-cleanup: keeping $family ${line#kept }" >&2
                    fi
                    ;;
            esac
        done <<<"$plan"
        [[ -n $restore ]] || return 0
        if apply "remove from $family ${what[*]}" "$family-restore" -w 5 --noflush <<<"$restore"; then
            CHAINS_REMOVED=$((CHAINS_REMOVED + chains))
            RULES_REMOVED=$((RULES_REMOVED + rules))
            return 0
        fi
        echo "proxy-cleanup: $family-restore failed (the tables changed meanwhile?); reading them again" >&2
    done
    fail "$family-restore failed twice; kube-proxy's old chains remain"
}

clean_iptables() {
    local family
    for family in iptables ip6tables; do
        if have "$family-save" && have "$family-restore"; then
            clean_iptables_family "$family"
        elif [[ $family == iptables ]] && { nb_module_loaded ip_tables || nb_module_loaded nft_compat; }; then
            fail "iptables-save/iptables-restore are missing; cannot remove kube-proxy's chains"
        fi
    done
}

# ---- ipvs -----------------------------------------------------------------
declare -A IPSET_MEMBERS=()
declare -a IPSET_NAMES=()

# Read every ipset before anything goes: the sets tell kube-proxy's virtual servers
# from anyone else's, and they are destroyed last.
read_ipsets() {
    local out line name="" in_members=0
    nb_module_loaded ip_set || return 0
    if ! have ipset; then
        if cleaning ipvs; then fail "ip_set is loaded but ipset is missing; cannot remove kube-proxy's ipsets"; fi
        return 0
    fi
    out=$(ipset list) || { fail "ipset list failed"; return 0; }
    while IFS= read -r line; do
        case $line in
            "Name: "*) name=${line#Name: }; IPSET_NAMES+=("$name"); IPSET_MEMBERS[$name]=""; in_members=0 ;;
            "Members:"*) in_members=1 ;;
            "") in_members=0 ;;
            *) if ((in_members)) && [[ -n $name ]]; then IPSET_MEMBERS[$name]+="${line%% *}"$'\n'; fi ;;
        esac
    done <<<"$out"
}

ipvs_owned_set() {
    local name=$1 known v6
    for known in ${IPVS_IPSETS//$'\n'/ }; do
        [[ $name == "$known" ]] && return 0
        # IPv6 sets are KUBE-6-<name without KUBE->, cut to ipset's 31-character limit
        # (KUBE-6-LOAD-BALANCER-SOURCE-CID), as kube-proxy names them.
        v6="KUBE-6-${known#KUBE-}"
        [[ $name == "${v6:0:31}" ]] && return 0
    done
    return 1
}

# kube-proxy's VIPs (on kube-ipvs0, or named in its sets) and NodePorts (its port sets).
kube_vips_and_ports() {
    local name member addrs
    VIPS=" " PORTS=" "
    if addrs=$(ip -o addr show dev kube-ipvs0 2>/dev/null); then
        VIPS+="$(awk '{ split($4, a, "/"); printf "%s ", a[1] }' <<<"$addrs")"
    fi
    for name in "${IPSET_NAMES[@]}"; do
        ipvs_owned_set "$name" || continue
        while read -r member; do
            [[ -n $member ]] || continue
            case ${name#KUBE-6-} in
                KUBE-NODE-PORT-* | NODE-PORT-*) PORTS+="${member##*:} " ;;
                KUBE-IPVS-IPS | IPVS-IPS) VIPS+="$member " ;;
                KUBE-CLUSTER-IP | CLUSTER-IP | KUBE-EXTERNAL-IP* | EXTERNAL-IP* | KUBE-LOAD-BALANCER | LOAD-BALANCER)
                    VIPS+="${member%%,*} " ;;
            esac
        done <<<"${IPSET_MEMBERS[$name]}"
    done
}

clean_ipvs_services() {
    local out removed=0 foreign=0 proto addr flag host port
    if nb_module_loaded ip_vs; then
        if have ipvsadm; then
            kube_vips_and_ports
            out=$(ipvsadm -Ln) || fail "ipvsadm -Ln failed"
            while read -r proto addr _; do
                case $proto in TCP) flag=-t ;; UDP) flag=-u ;; SCTP) flag=--sctp-service ;; *) continue ;; esac
                port=${addr##*:}
                host=${addr%:*}
                host=${host#[}
                host=${host%]}
                if [[ $VIPS == *" $host "* || $PORTS == *" $port "* ]]; then
                    if apply "delete IPVS virtual server $proto $addr" ipvsadm -D "$flag" "$addr"; then
                        removed=$((removed + 1))
                    else
                        fail "ipvsadm -D $flag $addr failed"
                    fi
                else
                    foreign=$((foreign + 1))
                fi
            done <<<"$out"
        else
            fail "ip_vs is loaded but ipvsadm is missing; cannot remove kube-proxy's IPVS virtual servers"
        fi
    fi
    if ((foreign > 0)); then echo "proxy-cleanup: keeping $foreign IPVS virtual servers that are not kube-proxy's" >&2; fi
    nb_fact ipvs_virtual_servers_removed "$removed"
    nb_fact ipvs_virtual_servers_foreign "$foreign"
}

clean_kube_ipvs0() {
    local removed=false
    if ip link show dev kube-ipvs0 >/dev/null 2>&1; then
        if apply "delete link kube-ipvs0" ip link delete dev kube-ipvs0; then
            removed=true
        else
            fail "ip link delete kube-ipvs0 failed"
        fi
    fi
    nb_fact kube_ipvs0_removed "$removed"
}

clean_ipsets() {
    local name count=0
    for name in "${IPSET_NAMES[@]}"; do
        ipvs_owned_set "$name" || { sweeping && [[ $name == KUBE-* ]]; } || continue
        if apply "destroy ipset $name" ipset destroy "$name"; then
            count=$((count + 1))
        else
            fail "ipset destroy $name failed (an iptables rule that is not kube-proxy's still uses it?)"
        fi
    done
    nb_fact ipsets_removed "$count"
}

# ---- nftables -------------------------------------------------------------
clean_nftables() {
    local out family gone=()
    if nb_module_loaded nf_tables; then
        if have nft; then
            out=$(nft list tables) || fail "nft list tables failed"
            for family in ip ip6; do
                grep -qxF "table $family kube-proxy" <<<"$out" || continue
                if apply "delete nftables table $family kube-proxy" nft delete table "$family" kube-proxy; then
                    gone+=("$family kube-proxy")
                else
                    fail "nft delete table $family kube-proxy failed"
                fi
            done
        else
            fail "nf_tables is loaded but nft is missing; cannot remove kube-proxy's nftables tables"
        fi
    fi
    nb_fact_list nft_tables_removed "${gone[@]}"
}

# ---- modules file ---------------------------------------------------------
clean_modules_file() {
    local removed=false ours=false
    if [[ -f $MODULES_FILE ]] && grep -qxF -- "$MARKER" "$MODULES_FILE"; then
        ours=true
    fi
    if [[ $REMOVE_FILE == 1 && $ours == true ]]; then
        if apply "remove $MODULES_FILE" rm -f -- "$MODULES_FILE"; then
            removed=true
        else
            fail "cannot remove $MODULES_FILE"
        fi
    elif [[ $REMOVE_FILE == 1 && -e $MODULES_FILE ]]; then
        echo "proxy-cleanup: keeping $MODULES_FILE: nodeboot did not write it" >&2
    fi
    nb_fact_str modules_file "$MODULES_FILE"
    nb_fact modules_file_removed "$removed"
    nb_fact modules_file_written_by_nodeboot "$ours"
}

main() {
    export LC_ALL=C
    trap 'nb_die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
    set -Eeuo pipefail
    read_inputs
    nb_read_modules
    read_ipsets
    # iptables first: kube-proxy's rules reference its ipsets, which cannot be
    # destroyed while anything still uses them.
    if cleaning iptables || cleaning ipvs; then clean_iptables; fi
    nb_fact iptables_chains_removed "$CHAINS_REMOVED"
    nb_fact iptables_rules_removed "$RULES_REMOVED"
    nb_fact_list iptables_chains_kept "${CHAINS_KEPT[@]}"
    if cleaning ipvs; then
        clean_ipvs_services
        clean_kube_ipvs0
        clean_ipsets
    else
        nb_fact ipvs_virtual_servers_removed 0
        nb_fact ipvs_virtual_servers_foreign 0
        nb_fact kube_ipvs0_removed false
        nb_fact ipsets_removed 0
    fi
    if cleaning nftables; then clean_nftables; else nb_fact nft_tables_removed "[]"; fi
    clean_modules_file
    if ((${#FAILURES[@]} > 0)); then
        local joined
        joined=$(printf '%s; ' "${FAILURES[@]}")
        nb_emit false "${joined%; }"
        exit 1
    fi
    nb_ok
}

main </dev/null
