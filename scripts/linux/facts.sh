# facts.sh: everything nodeboot decides with, gathered in one round trip.
# Inputs: NB_MODULES_FILE (where nodeboot persists IPVS modules).
NB_SCRIPT=facts.sh

main() {
    local os_id="" os_version="" pretty=""
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091 # the host's own file, read in a subshell
        { read -r os_id; read -r os_version; read -r pretty; } < <(
            . /etc/os-release && printf '%s\n' "${ID:-}" "${VERSION_ID:-}" "${PRETTY_NAME:-}")
    fi
    nb_fact_str os_id "$os_id"
    nb_fact_str os_version "$os_version"
    nb_fact_str os_pretty "$pretty"
    nb_fact_str kernel "$(uname -r)"
    nb_fact_str arch "$(uname -m)"
    nb_fact_str hostname "$(hostname)"
    nb_fact_str time "$(date +%s.%N)"
    nb_fact_str kubeadm_version "$(kubeadm version -o short 2>/dev/null || true)"
    nb_fact_str kubelet_version "$(kubelet --version 2>/dev/null | awk '{print $2}' || true)"
    local sock=/run/containerd/containerd.sock
    nb_fact cri_socket "$(nb_json_bool "$([[ -S $sock ]] && echo 1 || echo 0)")"
    nb_fact joined "$(nb_json_bool "$([[ -f /etc/kubernetes/kubelet.conf ]] && echo 1 || echo 0)")"
    nb_fact kubelet_configured "$(nb_json_bool "$([[ -f /var/lib/kubelet/config.yaml ]] && echo 1 || echo 0)")"
    local swap=0
    if [[ -r /proc/swaps ]] && (( $(wc -l < /proc/swaps) > 1 )); then swap=1; fi
    nb_fact swap_on "$(nb_json_bool $swap)"
    nb_fact_str ip_forward "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo missing)"
    nb_fact_str bridge_nf_call_iptables "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo missing)"
    local mods
    mods=$(lsmod 2>/dev/null | awk 'NR > 1 {print $1}' | grep -E '^(ip_vs|nf_conntrack|br_netfilter)' | sort | tr '\n' ' ')
    # shellcheck disable=SC2086
    nb_fact modules_loaded "$(nb_json_list $mods)"
    local mfile=${NB_MODULES_FILE:-/etc/modules-load.d/nodeboot-ipvs.conf}
    nb_fact modules_file "$(nb_json_bool "$([[ -f $mfile ]] && echo 1 || echo 0)")"
    local tool present=()
    for tool in ipset ipvsadm nft iptables conntrack; do
        command -v "$tool" >/dev/null 2>&1 && present+=("$tool")
    done
    nb_fact tools "$(nb_json_list "${present[@]}")"
    local pm=""
    for tool in apt-get dnf yum zypper; do command -v "$tool" >/dev/null 2>&1 && { pm=$tool; break; }; done
    nb_fact_str package_manager "$pm"
    local lock_owner=""
    [[ -f $NB_LOCK_DIR/owner ]] && lock_owner=$(cat "$NB_LOCK_DIR/owner" 2>/dev/null)
    nb_fact_str lock "$lock_owner"
    nb_ok
}

main </dev/null
