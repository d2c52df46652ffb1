# reset.sh: kubeadm reset, then what kubeadm reset leaves behind (CNI config).
# Inputs: NB_CRI_SOCKET, NB_RUN_ID, NB_DRY_RUN. kube-proxy's leftovers are
# proxy-cleanup.sh's job.
NB_SCRIPT=reset.sh

main() {
    local dry=${NB_DRY_RUN:-0}
    nb_flag NB_DRY_RUN "$dry"
    local cni=() f
    for f in /etc/cni/net.d/*; do [[ -e $f ]] && cni+=("$f"); done
    local joined=0
    [[ -f /etc/kubernetes/kubelet.conf || -f /var/lib/kubelet/config.yaml || -d /etc/kubernetes/pki ]] && joined=1
    nb_fact was_joined "$(nb_json_bool $joined)"
    if (( joined == 0 && ${#cni[@]} == 0 )); then nb_ok; fi
    if [[ $dry == 1 ]]; then
        (( joined )) && nb_changed "would run kubeadm reset -f"
        (( ${#cni[@]} )) && nb_changed "would remove ${cni[*]}"
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
    fi
    if (( ${#cni[@]} )); then
        rm -rf "${cni[@]}"
        nb_changed "removed ${#cni[@]} entries from /etc/cni/net.d"
    fi
    nb_ok
}

main </dev/null
