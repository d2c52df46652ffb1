# reset.sh: kubeadm reset, then what kubeadm reset leaves behind: the CNI's config
# (/etc/cni/net.d), its state (/var/lib/cni), its links (cni0, flannel.1,
# vxlan.calico, ...) and its own iptables chains and nft tables (CNI-*, FLANNEL-*,
# cali-*). Anything else on the host is left as it is.
# Inputs: NB_CRI_SOCKET, NB_RUN_ID, NB_DRY_RUN. kube-proxy's leftovers are
# proxy-cleanup.sh's job.
NB_SCRIPT=reset.sh

# Links the CNIs nodeboot knows create on every node (pod veths go with their pods).
CNI_LINKS=(cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 vxlan.calico vxlan-v6.calico wireguard.cali)
# Chains the CNI plugins (portmap, firewall, bridge's ipMasq), flannel and calico make.
CNI_CHAIN='^(CNI-|FLANNEL-|cali-)'
# nft tables of the same CNIs' nftables backends.
CNI_NFT_TABLE='^(cni|flannel|calico)'

# cni_iptables_plan SAVE: for one table of iptables-save output, the iptables-restore
# --noflush input that removes the CNI's chains: first every rule elsewhere that jumps to
# one, then each chain's rules, then the chains. Prints nothing when there is nothing.
cni_iptables_plan() {
    awk -v pat="$CNI_CHAIN" '
        /^\*/ { table = $0; next }
        /^:/ { name = substr($1, 2); if (name ~ pat) chains[++n] = name; next }
        /^-A / {
            target = ""
            for (i = 3; i < NF; i++) if ($i == "-j" || $i == "-g") target = $(i + 1)
            if ($2 !~ pat && target ~ pat) { sub(/^-A /, "-D "); jumps[++m] = $0 }
        }
        END {
            if (!n && !m) exit
            print table
            for (i = 1; i <= m; i++) print jumps[i]
            for (i = 1; i <= n; i++) print "-F " chains[i]
            for (i = 1; i <= n; i++) print "-X " chains[i]
            print "COMMIT"
        }' <<<"$1"
}

# clean_cni_iptables FAMILY-TOOL (iptables | ip6tables): the CNI's chains, table by table.
clean_cni_iptables() {
    local tool=$1 table save plan chains
    command -v "$tool-save" >/dev/null 2>&1 || return 0
    for table in filter nat mangle raw; do
        save=$("$tool-save" -t "$table" 2>/dev/null </dev/null) || continue
        plan=$(cni_iptables_plan "$save")
        [[ -n $plan ]] || continue
        chains=$(awk '/^-X / {print $2}' <<<"$plan" | tr '\n' ' ')
        chains=${chains% }
        if [[ $dry == 1 ]]; then
            nb_changed "would remove $tool $table chains: $chains"
        elif "$tool-restore" --noflush <<<"$plan" >&2; then
            nb_changed "removed $tool $table chains: $chains"
            removed_chains+=("$tool/$table/${chains// /,}")
        else
            failures+=("$tool-restore could not remove the $table chains $chains")
        fi
    done
}

clean_cni() {
    local link family name
    for link in "${CNI_LINKS[@]}"; do
        ip link show "$link" >/dev/null 2>&1 </dev/null || continue
        if [[ $dry == 1 ]]; then
            nb_changed "would remove link $link"
        elif ip link delete "$link" </dev/null; then
            nb_changed "removed link $link"
            removed_links+=("$link")
        else
            failures+=("could not remove link $link")
        fi
    done
    # The CNI's IP allocations and caches; the directory itself may be a mount point.
    if [[ -d /var/lib/cni ]]; then
        if [[ $dry == 1 ]]; then
            nb_changed "would remove /var/lib/cni"
        elif find /var/lib/cni -mindepth 1 -delete </dev/null; then
            rmdir /var/lib/cni 2>/dev/null || true
            nb_changed "removed /var/lib/cni"
            state_removed=1
        else
            failures+=("could not remove everything in /var/lib/cni")
        fi
    fi
    clean_cni_iptables iptables
    clean_cni_iptables ip6tables
    if command -v nft >/dev/null 2>&1; then
        while read -r _ family name; do
            [[ $name =~ $CNI_NFT_TABLE ]] || continue
            if [[ $dry == 1 ]]; then
                nb_changed "would remove nft table $family $name"
            elif nft delete table "$family" "$name" </dev/null; then
                nb_changed "removed nft table $family $name"
                removed_tables+=("$family $name")
            else
                failures+=("could not remove nft table $family $name")
            fi
        done < <(nft list tables 2>/dev/null </dev/null)
    fi
}

main() {
    local dry=${NB_DRY_RUN:-0}
    nb_flag NB_DRY_RUN "$dry"
    local cni=() f
    for f in /etc/cni/net.d/*; do [[ -e $f ]] && cni+=("$f"); done
    local joined=0
    [[ -f /etc/kubernetes/kubelet.conf || -f /var/lib/kubelet/config.yaml || -d /etc/kubernetes/pki ]] && joined=1
    nb_fact_bool was_joined $joined
    local removed_links=() removed_chains=() removed_tables=() failures=() state_removed=0
    if [[ $dry == 1 ]]; then
        (( joined )) && nb_changed "would run kubeadm reset -f"
        (( ${#cni[@]} )) && nb_changed "would remove ${cni[*]}"
        clean_cni
        nb_ok
    fi
    nb_lock
    if (( joined )); then
        local args=(reset -f)
        [[ -n ${NB_CRI_SOCKET:-} ]] && args+=(--cri-socket "$NB_CRI_SOCKET")
        if ! kubeadm "${args[@]}" 2>&1; then
            nb_die "kubeadm reset -f failed; see the lines above"
        fi
        nb_changed "kubeadm reset -f"
        systemctl stop kubelet >/dev/null 2>&1 || true
        # kubeadm empties the kubelet's state directory but keeps it; a node taken out
        # keeps nothing of the kubelet. Never a directory something is mounted on.
        if [[ -d /var/lib/kubelet ]] && ! mountpoint -q /var/lib/kubelet && rmdir /var/lib/kubelet 2>/dev/null; then
            nb_changed "removed the empty /var/lib/kubelet"
        fi
    fi
    if (( ${#cni[@]} )); then
        rm -rf "${cni[@]}"
        nb_changed "removed ${#cni[@]} entries from /etc/cni/net.d"
    fi
    clean_cni
    nb_fact_list cni_links_removed "${removed_links[@]}"
    nb_fact_list cni_chains_removed "${removed_chains[@]}"
    nb_fact_list cni_nft_tables_removed "${removed_tables[@]}"
    nb_fact_bool cni_state_removed $state_removed
    if (( ${#failures[@]} )); then
        nb_die "CNI cleanup incomplete: $(IFS=';'; echo "${failures[*]}")"
    fi
    nb_ok
}

main </dev/null
