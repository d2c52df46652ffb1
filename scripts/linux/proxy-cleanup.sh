#!/usr/bin/env bash
# proxy-cleanup.sh: remove what kube-proxy left on a Linux host (kubeadm reset does not).
#
# Inputs (NB_* variables, exported ahead of this script on stdin):
#   NB_CLEAN_MODES          space-separated subset of "ipvs iptables nftables": the modes
#                           whose leftovers to remove (unset: all three; empty: none)
#   NB_REMOVE_MODULES_FILE  0 | 1  also remove NB_MODULES_FILE, but only if it carries the
#                           marker proxy-prereqs.sh writes                   (default 0)
#   NB_MODULES_FILE         default /etc/modules-load.d/nodeboot-ipvs.conf
#   NB_DRY_RUN              0 | 1  report what would be removed, remove nothing  (default 0)
#
# Output: human text on stderr, then exactly one JSON line on stdout:
#   {"ok":bool,"changed":bool,"facts":{...},"error":"..."}
# facts: modes, dry_run, iptables_chains_removed, iptables_rules_removed,
#   ipvs_virtual_servers_removed, kube_ipvs0_removed, ipsets_removed,
#   nft_tables_removed (["ip kube-proxy", ...]), modules_file,
#   modules_file_removed, modules_file_written_by_nodeboot,
#   actions (what was removed, or in a dry run what would be).
#
# Nothing here loads a kernel module: a subsystem whose module is not loaded
# (per lsmod) cannot hold kube-proxy state, and asking its tool (ipvsadm,
# ipset, nft) would load it.
# Commands are called by plain name: the lab puts stand-ins first on PATH.
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

# ---- inputs ---------------------------------------------------------------
read_inputs() {
    local mode
    MODES=${NB_CLEAN_MODES-ipvs iptables nftables}
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
    [[ $MODULES_FILE == /* ]] || nb_die "NB_MODULES_FILE must be an absolute path, got '$MODULES_FILE'"
    NB_SAY_PREFIX=""
    if [[ $DRY_RUN == 1 ]]; then NB_SAY_PREFIX="(dry run) would "; fi
    nb_fact modes "$(nb_json_list "${MODE_LIST[@]}")"
    nb_fact dry_run "$(nb_json_bool "$DRY_RUN")"
}

cleaning() {
    local mode
    for mode in "${MODE_LIST[@]}"; do
        if [[ $mode == "$1" ]]; then return 0; fi
    done
    return 1
}

# ---- modules (read only) --------------------------------------------------

# ---- iptables -------------------------------------------------------------
CHAINS_REMOVED=0
RULES_REMOVED=0

# table_section DUMP TABLE: the "*TABLE ... COMMIT" part of an iptables-save dump.
table_section() {
    awk -v head="*$2" '$0 == head { on = 1 } on { print } on && $0 == "COMMIT" { on = 0 }' <<<"$1"
}

# Drop kube-proxy's KUBE-* chains, their rules and every jump into them from
# filter, nat and mangle. One save (which, unlike `-t TABLE`, loads no table
# module) and one restore of just the changed tables, which replaces each
# table atomically.
clean_iptables_family() {
    local family=$1 dump table section kept restore="" n_chains n_rules chains=0 rules=0 what=()
    dump=$("$family-save") || { fail "$family-save failed"; return 0; }
    for table in filter nat mangle; do
        section=$(table_section "$dump" "$table")
        [[ -n $section ]] || continue
        kept=$(grep -vE '^:KUBE-|^-A KUBE-| -[jg] KUBE-' <<<"$section" || true)
        if [[ $kept == "$section" ]]; then continue; fi
        n_chains=$(grep -cE '^:KUBE-' <<<"$section" || true)
        n_rules=$(($(wc -l <<<"$section") - $(wc -l <<<"$kept") - n_chains))
        chains=$((chains + n_chains))
        rules=$((rules + n_rules))
        what+=("$table: $n_chains KUBE-* chains, $n_rules rules")
        restore+="$kept"$'\n'
    done
    [[ -n $restore ]] || return 0
    if apply "remove from $family ${what[*]}" "$family-restore" <<<"$restore"; then
        CHAINS_REMOVED=$((CHAINS_REMOVED + chains))
        RULES_REMOVED=$((RULES_REMOVED + rules))
    else
        fail "$family-restore failed; KUBE-* chains remain"
    fi
}

clean_iptables() {
    local family
    for family in iptables ip6tables; do
        if have "$family-save" && have "$family-restore"; then
            clean_iptables_family "$family"
        elif [[ $family == iptables ]] && { nb_module_loaded ip_tables || nb_module_loaded nft_compat; }; then
            fail "iptables-save/iptables-restore are missing; cannot remove KUBE-* chains"
        fi
    done
    nb_fact iptables_chains_removed "$CHAINS_REMOVED"
    nb_fact iptables_rules_removed "$RULES_REMOVED"
}

# ---- ipvs -----------------------------------------------------------------
clean_ipvs_services() {
    local out count=0 removed=0
    if nb_module_loaded ip_vs; then
        if have ipvsadm; then
            out=$(ipvsadm -Ln) || fail "ipvsadm -Ln failed"
            count=$(grep -cE '^(TCP|UDP|SCTP|FWM)[[:space:]]' <<<"$out" || true)
            if ((count > 0)); then
                if apply "clear $count IPVS virtual servers" ipvsadm -C; then
                    removed=$count
                else
                    fail "ipvsadm -C failed"
                fi
            fi
        else
            fail "ip_vs is loaded but ipvsadm is missing; cannot clear IPVS virtual servers"
        fi
    fi
    nb_fact ipvs_virtual_servers_removed "$removed"
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
    local out name count=0
    if nb_module_loaded ip_set; then
        if have ipset; then
            out=$(ipset list -n) || fail "ipset list -n failed"
            while read -r name; do
                [[ $name == KUBE-* ]] || continue
                if apply "destroy ipset $name" ipset destroy "$name"; then
                    count=$((count + 1))
                else
                    fail "ipset destroy $name failed (still referenced by iptables rules? add iptables to NB_CLEAN_MODES)"
                fi
            done <<<"$out"
        else
            fail "ip_set is loaded but ipset is missing; cannot remove KUBE-* ipsets"
        fi
    fi
    nb_fact ipsets_removed "$count"
}

# ---- nftables -------------------------------------------------------------
clean_nftables() {
    local out family gone=()
    if nb_module_loaded nf_tables; then
        if have nft; then
            out=$(nft list tables) || fail "nft list tables failed"
            for family in ip ip6 inet; do
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
    nb_fact nft_tables_removed "$(nb_json_list "${gone[@]}")"
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
    nb_fact modules_file "$(nb_json_str "$MODULES_FILE")"
    nb_fact modules_file_removed "$removed"
    nb_fact modules_file_written_by_nodeboot "$ours"
}

main() {
    export LC_ALL=C
    trap 'nb_die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
    set -Eeuo pipefail
    read_inputs
    nb_read_modules
    # iptables first: its rules reference the KUBE-* ipsets, which cannot be
    # destroyed while anything still uses them.
    if cleaning iptables; then clean_iptables; fi
    if cleaning ipvs; then
        clean_ipvs_services
        clean_kube_ipvs0
        clean_ipsets
    fi
    if cleaning nftables; then clean_nftables; fi
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
