# facts.sh: everything nodeboot decides with, gathered in one round trip.
# Inputs: NB_MODULES_FILE (where nodeboot persists IPVS modules).
NB_SCRIPT=facts.sh

# What nodeboot's install left (install.sh's state file: its key and the sha256 of
# each config file it wrote) and the parts a join needs. Paths honour NB_ROOT (tests).
install_facts() {
    local root=${NB_ROOT:-} p plugins=() kind hash path key="" ok=0 paths=() sums=() line i=0
    nb_fact runc "$(nb_json_bool "$(command -v runc >/dev/null 2>&1 && echo 1 || echo 0)")"
    for p in bridge host-local loopback portmap; do [[ -x $root/opt/cni/bin/$p ]] && plugins+=("$p"); done
    nb_fact cni_plugins "$(nb_json_list "${plugins[@]}")"
    local state=$root/var/lib/nodeboot/install.state
    if [[ -r $state ]]; then
        ok=1
        while read -r kind hash path; do
            case $kind in
                key) key=$hash ;;
                file) paths+=("$root$path"); sums+=("$hash") ;;
            esac
        done < "$state"
        if (( ${#paths[@]} )); then
            # One sha256sum for every file; a missing file fails the comparison.
            while read -r line; do
                [[ ${line%% *} == "${sums[i]:-}" ]] || ok=0
                i=$((i + 1))
            done < <(sha256sum -- "${paths[@]}" 2>/dev/null)
            (( i == ${#paths[@]} )) || ok=0
        fi
        nb_fact_str containerd_version "$(containerd --version 2>/dev/null | awk '{print $3}')"
        nb_fact_str runc_version "$(runc --version 2>/dev/null | awk 'NR == 1 {print $3}')"
    fi
    nb_fact_str install_key "$key"
    nb_fact install_files_ok "$(nb_json_bool $ok)"
}

# cri_facts SOCKET: ask the runtime behind the socket, not just whether the file is there.
# crictl makes the CRI Version call itself; without it, containerd's own client asks
# containerd's version service; with neither, only the socket is known (cri_check says which).
cri_facts() {
    local sock=$1 check=socket out="" ok=0
    if [[ -S $sock ]]; then
        if command -v crictl >/dev/null 2>&1; then
            check=crictl
            out=$(timeout 10 crictl --runtime-endpoint "unix://$sock" version 2>&1 </dev/null) && ok=1
            [[ $ok == 1 ]] && out=$(awk -F': *' '$1 == "RuntimeName" {n=$2} $1 == "RuntimeVersion" {v=$2}
                                        END {print n " " v}' <<<"$out")
        elif command -v ctr >/dev/null 2>&1; then
            check=ctr
            out=$(timeout 10 ctr --address "$sock" version 2>&1 </dev/null) && ok=1
            [[ $ok == 1 ]] && out="containerd $(awk '/^Server:/ {s=1} s && $1 == "Version:" {print $2; exit}' <<<"$out")"
        fi
    fi
    nb_fact_str cri_check "$check"
    nb_fact cri_answered "$(nb_json_bool $ok)"
    # The runtime's name and version, or (when it did not answer) its client's last line.
    nb_fact_str cri_version "$(tail -n 1 <<<"$out")"
}

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
    cri_facts "$sock"
    nb_fact joined "$(nb_json_bool "$([[ -f /etc/kubernetes/kubelet.conf ]] && echo 1 || echo 0)")"
    nb_fact kubelet_configured "$(nb_json_bool "$([[ -f /var/lib/kubelet/config.yaml ]] && echo 1 || echo 0)")"
    # What a CNI leaves that reset.sh removes (its chains are only looked at by reset.sh itself).
    local cni_left=0 links
    links=$(ip -o link show 2>/dev/null </dev/null)
    if [[ -d /var/lib/cni || -n $(ls -A /etc/cni/net.d 2>/dev/null) ]] \
        || grep -qE '^[0-9]+: (cni0|flannel\.1|vxlan\.calico)[:@]' <<<"$links"; then
        cni_left=1
    fi
    nb_fact cni_leftovers "$(nb_json_bool $cni_left)"
    local swap=0
    if [[ -r /proc/swaps ]] && (( $(wc -l < /proc/swaps) > 1 )); then swap=1; fi
    nb_fact swap_on "$(nb_json_bool $swap)"
    nb_fact_str ip_forward "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo missing)"
    nb_fact_str bridge_nf_call_iptables "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo missing)"
    nb_fact_str ipv6_forward "$(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null || echo missing)"
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
    install_facts
    local lock_owner=""
    [[ -f $NB_LOCK_DIR/owner ]] && lock_owner=$(cat "$NB_LOCK_DIR/owner" 2>/dev/null)
    nb_fact_str lock "$lock_owner"
    nb_ok
}

main </dev/null
