# join.sh: run kubeadm join with a JoinConfiguration that never touches argv.
# Inputs: NB_JOIN_CONFIG (the YAML itself, a shell variable, not exported) or
# NB_JOIN_CONFIG_FILE (a 0600 file, e.g. copied by Ansible); NB_RUN_ID;
# NB_KUBELET_PATCH (a KubeletConfiguration patch, written as
# NB_PATCHES_DIR/kubeletconfiguration+merge.yaml for the config's patches.directory);
# NB_DRY_RUN (1: say what it would clear, write and run; no configuration is needed).
# On failure kubeadm reset puts the host back as it was, and the result says so.
NB_SCRIPT=join.sh
NB_WORK_DIR=${NB_WORK_DIR:-/run/nodeboot}

# dry_run: what a join would do on this host, changing nothing. kubeadm may be missing
# yet: the install phase, before this one, puts it there.
dry_run() {
    local kubeadm
    if [[ -e /etc/kubernetes/pki/ca.crt || -e /etc/kubernetes/bootstrap-kubelet.conf ]]; then
        nb_changed "would clear a join that was cut short (kubeadm reset -f)"
    fi
    if [[ -n ${NB_KUBELET_PATCH:-} ]]; then
        nb_changed "would write ${NB_PATCHES_DIR:-/etc/kubernetes/patches}/kubeletconfiguration+merge.yaml"
    fi
    kubeadm=$(kubeadm version -o short 2>/dev/null) || kubeadm="(not installed yet)"
    nb_changed "would run kubeadm join $kubeadm with the JoinConfiguration in a 0600 file under $NB_WORK_DIR (removed afterwards; a failed join is undone with kubeadm reset -f)"
    nb_fact joined false
    nb_ok
}

main() {
    local dry=${NB_DRY_RUN:-0}
    nb_flag NB_DRY_RUN "$dry"
    if [[ -f /etc/kubernetes/kubelet.conf ]]; then
        nb_fact joined true
        nb_ok
    fi
    [[ $dry == 1 ]] && dry_run
    command -v kubeadm >/dev/null || nb_die "kubeadm is not installed on this host"
    nb_lock
    # A join cut short earlier (connection lost, host rebooted) leaves files that
    # make kubeadm's preflight refuse; clear them first, and say so.
    # Config files of such a run are ours too (we hold the lock): they go.
    rm -f "$NB_WORK_DIR"/join.*
    if [[ -e /etc/kubernetes/pki/ca.crt || -e /etc/kubernetes/bootstrap-kubelet.conf ]]; then
        kubeadm reset -f > /dev/null 2>&1 || nb_die "a previous join was cut short and 'kubeadm reset -f' failed"
        nb_changed "cleared a join that was cut short (kubeadm reset -f)"
    fi
    local cfg log rc
    umask 077
    # /run is a root-only tmpfs: the config (it holds the token) never reaches a disk.
    mkdir -p "$NB_WORK_DIR" && chmod 0700 "$NB_WORK_DIR"
    cfg=$(mktemp "$NB_WORK_DIR/join.XXXXXXXX")
    log=$(mktemp "$NB_WORK_DIR/join.log.XXXXXXXX")
    # Both files go, whatever happens below.
    trap 'rm -f "$cfg" "$log" ${NB_JOIN_CONFIG_FILE:+"$NB_JOIN_CONFIG_FILE"}; nb_on_exit' EXIT
    if [[ -n ${NB_JOIN_CONFIG:-} ]]; then
        printf '%s\n' "$NB_JOIN_CONFIG" > "$cfg"
    elif [[ -n ${NB_JOIN_CONFIG_FILE:-} && -f $NB_JOIN_CONFIG_FILE ]]; then
        cat "$NB_JOIN_CONFIG_FILE" > "$cfg"
    else
        nb_die "no join configuration given (NB_JOIN_CONFIG or NB_JOIN_CONFIG_FILE)"
    fi
    if [[ -n ${NB_KUBELET_PATCH:-} ]]; then
        # Only nodeboot's own patch file is written; anything else in the directory stays.
        local patches=${NB_PATCHES_DIR:-/etc/kubernetes/patches}
        { mkdir -p "$patches" && printf '%s\n' "$NB_KUBELET_PATCH" > "$patches/kubeletconfiguration+merge.yaml"; } \
            || nb_die "cannot write $patches/kubeletconfiguration+merge.yaml"
    fi
    kubeadm join --config "$cfg" > "$log" 2>&1
    rc=$?
    cat "$log"
    if (( rc == 0 )); then
        nb_changed "kubeadm join"
        nb_fact joined true
        nb_ok
    fi
    local tail
    tail=$(grep -v -e '^\s*$' -e 'CONFIG_' -e 'CGROUPS_' "$log" | tail -n 8)
    # Leave the host as it was before the join, so a re-run starts clean.
    if kubeadm reset -f > /dev/null 2>&1; then
        nb_fact restored true
        nb_die "kubeadm join failed (exit $rc); the host was reset with 'kubeadm reset -f'. kubeadm said: $tail"
    fi
    nb_fact restored false
    nb_die "kubeadm join failed (exit $rc) and 'kubeadm reset -f' failed too: run it on the host. kubeadm said: $tail"
}

main </dev/null
