# proxy-preflight.sh: can this node run kube-proxy in NB_PROXY_MODE? (read only, but
# for nftables it loads the kernel modules kube-proxy will need).
#
# Inputs: NB_PROXY_MODE (iptables | ipvs | nftables).
# Facts: mode, kernel, problems (list of what stops the mode), notes.
# nftables: kernel >= 5.13, and nft really works: a throwaway table "ip nodeboot-preflight"
#   with a nat chain, a dnat rule, a set and a verdict map (what kube-proxy's table uses) is
#   created and deleted again; that loads nf_tables, nft_nat, nft_chain_nat and friends, or fails.
# ipvs: `ipvsadm -Ln` answers (ip_vs usable), ipset is there.
# iptables: iptables-save and iptables-restore are there.
NB_SCRIPT=proxy-preflight.sh

declare -a PROBLEMS=()

nft_works() {
    local out
    if ! command -v nft >/dev/null 2>&1; then
        PROBLEMS+=("nft is not installed (package nftables)")
        return
    fi
    nft delete table ip nodeboot-preflight >/dev/null 2>&1 || true
    if ! out=$(nft -f - 2>&1 <<'NFT'
table ip nodeboot-preflight {
    set ips { type ipv4_addr; }
    map vips { type ipv4_addr . inet_proto . inet_service : verdict; }
    chain svc { meta l4proto tcp dnat to 192.0.2.1:80; }
    chain out {
        type nat hook output priority -100; policy accept;
        ip daddr . meta l4proto . th dport vmap @vips
        ip daddr @ips numgen random mod 1 vmap { 0 : jump svc }
    }
}
NFT
    ); then
        PROBLEMS+=("nftables does not work here (kube-proxy's kind of table could not be created): ${out//$'\n'/ }")
    fi
    nft delete table ip nodeboot-preflight >/dev/null 2>&1 || true
}

main() {
    export LC_ALL=C
    local mode=${NB_PROXY_MODE:-} kernel major minor
    case $mode in
        iptables | ipvs | nftables) ;;
        *) nb_die "NB_PROXY_MODE must be iptables, ipvs or nftables, got '$mode'" ;;
    esac
    kernel=$(uname -r)
    nb_fact_str mode "$mode"
    nb_fact_str kernel "$kernel"
    case $mode in
        nftables)
            IFS=. read -r major minor _ <<<"$kernel"
            minor=${minor%%[!0-9]*}
            if ((${major:-0} < 5 || (${major:-0} == 5 && ${minor:-0} < 13))); then
                PROBLEMS+=("kernel $kernel is older than 5.13, which kube-proxy's nftables mode needs")
            else
                nft_works
            fi
            ;;
        ipvs)
            command -v ipset >/dev/null 2>&1 || PROBLEMS+=("ipset is not installed")
            if ! command -v ipvsadm >/dev/null 2>&1; then
                PROBLEMS+=("ipvsadm is not installed")
            elif ! ipvsadm -Ln >/dev/null 2>&1; then
                PROBLEMS+=("IPVS is not usable (ipvsadm -Ln fails: ip_vs not loaded?)")
            fi
            ;;
        iptables)
            command -v iptables-restore >/dev/null 2>&1 || PROBLEMS+=("iptables-restore is not installed")
            ;;
    esac
    nb_fact_list problems "${PROBLEMS[@]}"
    nb_ok
}

main </dev/null
