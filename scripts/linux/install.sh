# install.sh: make a bare Linux host a node that kubeadm can join: containerd,
# runc, the CNI plugins, kubelet and kubeadm from a mirror laid out as upstream
# publishes them, their systemd units, containerd's config and the host's
# modules and sysctls.
#
# Inputs (nodeboot computes the URLs; this script downloads what it is told):
#   NB_ARTIFACTS        lines "KIND VERSION URL CHECKSUM_URL"; KIND is one of
#                       kubelet kubeadm kubectl containerd cni runc
#   NB_ARTIFACTS_CA     PEM text: the CA the downloads are checked against (optional)
#   NB_KUBERNETES_VERSION  vX.Y.Z, to ask kubeadm for its sandbox image
#   NB_REGISTRY_MIRRORS lines "REGISTRY URL" (optional)
#   NB_REGISTRY_CA      PEM text for the mirrors (optional)
#   NB_DISABLE_SWAP     0|1: turn swap off now and for good
#   NB_INSTALL_KEY      what nodeboot asked for, kept in the state file for facts.sh
#   NB_DRY_RUN, NB_RUN_ID, NB_ROOT (a prefix for every file path; tests only)
#
# Nothing is half-installed: everything is downloaded into a private temp dir,
# checked against its sha256, unpacked and rendered there first; only then are
# files moved into place (each by a rename), and only the ones that differ.
NB_SCRIPT=install.sh
NB_ROOT=${NB_ROOT:-}
NB_TMP=""
NB_DOWNLOADED=""
NB_SANDBOX_IMAGE=""
NB_CONTAINERD_SOCK=/run/containerd/containerd.sock
NB_STATE_FILE=/var/lib/nodeboot/install.state
NB_CURL_ARGS=(-sS -L --connect-timeout 15 --max-time 900 --retry 2)
declare -A NB_URL=() NB_SUM_URL=() NB_VERSION=() NB_MIRROR=()
declare -a NB_KINDS=() NB_REGISTRIES=() NB_REPLACED=()

nb_tmp_cleanup() {
    [[ -n $NB_TMP && -d $NB_TMP ]] && rm -rf "$NB_TMP"
    nb_on_exit
}

read_inputs() {
    local kind version url sum_url extra registry
    [[ -n ${NB_ARTIFACTS:-} ]] || nb_die "NB_ARTIFACTS is not set: nothing to install"
    [[ ${NB_KUBERNETES_VERSION:-} =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
        || nb_die "NB_KUBERNETES_VERSION '${NB_KUBERNETES_VERSION:-}' is not a version such as v1.37.2"
    while read -r kind version url sum_url extra; do
        [[ -z $kind ]] && continue
        case $kind in kubelet | kubeadm | kubectl | containerd | cni | runc) ;;
            *) nb_die "NB_ARTIFACTS: unknown kind '$kind'" ;; esac
        [[ -n $sum_url && -z $extra ]] || nb_die "NB_ARTIFACTS: '$kind' needs exactly: KIND VERSION URL CHECKSUM_URL"
        [[ $url =~ ^https?://[^[:space:]\"]+$ && $sum_url =~ ^https?://[^[:space:]\"]+$ ]] \
            || nb_die "NB_ARTIFACTS: '$kind' URLs must be http(s) URLs"
        [[ -v "NB_URL[$kind]" ]] && nb_die "NB_ARTIFACTS: '$kind' is listed twice"
        NB_KINDS+=("$kind")
        NB_URL[$kind]=$url
        NB_SUM_URL[$kind]=$sum_url
        NB_VERSION[$kind]=$version
    done <<<"$NB_ARTIFACTS"
    for kind in kubelet kubeadm containerd cni runc; do
        [[ -v "NB_URL[$kind]" ]] || nb_die "NB_ARTIFACTS has no '$kind'"
    done
    while read -r registry url extra; do
        [[ -z $registry ]] && continue
        [[ $registry =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || nb_die "NB_REGISTRY_MIRRORS: '$registry' is not a registry host[:port]"
        [[ $url =~ ^https?://[^[:space:]\"]+$ && -z $extra ]] \
            || nb_die "NB_REGISTRY_MIRRORS: the mirror of $registry must be one http(s) URL"
        NB_REGISTRIES+=("$registry")
        NB_MIRROR[$registry]=$url
    done <<<"${NB_REGISTRY_MIRRORS:-}"
    NB_DISABLE_SWAP=${NB_DISABLE_SWAP:-0}
    NB_DRY_RUN=${NB_DRY_RUN:-0}
    nb_flag NB_DISABLE_SWAP "$NB_DISABLE_SWAP"
    nb_flag NB_DRY_RUN "$NB_DRY_RUN"
}

# fetch URL DEST: one download; a failure names the URL and what went wrong.
fetch() {
    local url=$1 dest=$2 code reason
    if ! code=$(curl "${NB_CURL_ARGS[@]}" -o "$dest" -w '%{http_code}' "$url" 2>"$NB_TMP/curl.err" </dev/null); then
        reason=$(grep -v '^\s*$' "$NB_TMP/curl.err" | tail -n 1)
        nb_die "cannot download $url: ${reason#curl: }"
    fi
    case $code in
        200) ;;
        404) nb_die "the mirror has no $url (HTTP 404): it does not carry this version" ;;
        *) nb_die "cannot download $url: HTTP $code" ;;
    esac
}

# expected_sum CHECKSUM_FILE NAME: the hex digest for NAME. A file holding only a
# digest (kubelet.sha256) or "HEX  NAME" lines (sha256sum's format) both work.
expected_sum() {
    local file=$1 name=$2 hash entry found="" lines=0
    # (dl.k8s.io's .sha256 files end without a newline: the last line counts too.)
    while read -r hash entry _ || [[ -n $hash ]]; do
        [[ -z $hash ]] && continue
        lines=$((lines + 1))
        entry=${entry#\*}
        if [[ -z $entry && $lines == 1 ]] || [[ -n $entry && ${entry##*/} == "$name" ]]; then
            found=$hash
            [[ -n $entry ]] && break
        fi
    done <"$file"
    found=${found,,}
    [[ $found =~ ^[0-9a-f]{64}$ ]] && printf '%s' "$found"
}

# download KIND: the artifact and its checksum file, verified, at $NB_DOWNLOADED.
# (Results go through globals, never $(...): nb_die must run in the script's own shell.)
download() {
    local kind=$1 url=${NB_URL[$1]} sum_url=${NB_SUM_URL[$1]} name want got dest
    name=${url##*/}
    dest="$NB_TMP/dl/$kind.$name"
    fetch "$sum_url" "$dest.sum"
    fetch "$url" "$dest"
    want=$(expected_sum "$dest.sum" "$name") || nb_die "$sum_url has no sha256 for $name"
    got=$(sha256sum "$dest" | awk '{print $1}')
    [[ $got == "$want" ]] \
        || nb_die "sha256 mismatch for $url: $sum_url says $want, the file has $got; nothing was installed"
    NB_DOWNLOADED=$dest
}

stage_binary() { # SOURCE STAGE_PATH
    install -D -m 0755 "$1" "$NB_TMP/stage$2" || nb_die "cannot stage $2"
}

stage_file() { # STAGE_PATH CONTENT
    { mkdir -p "$(dirname "$NB_TMP/stage$1")" && printf '%s\n' "$2" > "$NB_TMP/stage$1"; } || nb_die "cannot stage $1"
}

stage_artifacts() {
    local file kind entry
    for kind in kubelet kubeadm kubectl runc; do
        [[ -v "NB_URL[$kind]" ]] || continue
        download "$kind"
        file=$NB_DOWNLOADED
        case $kind in
            runc) stage_binary "$file" /usr/local/sbin/runc ;;
            *) stage_binary "$file" "/usr/local/bin/$kind" ;;
        esac
        rm -f "$file"
    done
    download containerd
    file=$NB_DOWNLOADED
    mkdir -p "$NB_TMP/x/containerd"
    tar -xzf "$file" -C "$NB_TMP/x/containerd" </dev/null || nb_die "cannot unpack ${NB_URL[containerd]}"
    for entry in containerd containerd-shim-runc-v2 ctr; do
        [[ -f $NB_TMP/x/containerd/bin/$entry ]] || nb_die "${NB_URL[containerd]} has no bin/$entry"
    done
    for entry in "$NB_TMP"/x/containerd/bin/*; do
        [[ -f $entry ]] && stage_binary "$entry" "/usr/local/bin/${entry##*/}"
    done
    download cni
    file=$NB_DOWNLOADED
    mkdir -p "$NB_TMP/x/cni"
    tar -xzf "$file" -C "$NB_TMP/x/cni" </dev/null || nb_die "cannot unpack ${NB_URL[cni]}"
    [[ -f $NB_TMP/x/cni/loopback ]] || nb_die "${NB_URL[cni]} has no loopback plugin at its top level"
    for entry in "$NB_TMP"/x/cni/*; do
        [[ -f $entry && -x $entry ]] && stage_binary "$entry" "/opt/cni/bin/${entry##*/}"
    done
    rm -rf "$NB_TMP/x" "$NB_TMP/dl"
}

# The pause image the kubeadm just downloaded wants for this Kubernetes version, at $NB_SANDBOX_IMAGE.
sandbox_image() {
    local out
    out=$("$NB_TMP/stage/usr/local/bin/kubeadm" config images list --kubernetes-version "$NB_KUBERNETES_VERSION" \
        2>&1 </dev/null) || nb_die "kubeadm from ${NB_URL[kubeadm]} could not list its images: $(tail -n 1 <<<"$out")"
    NB_SANDBOX_IMAGE=$(grep -m 1 -E '/pause:' <<<"$out")
    [[ -n $NB_SANDBOX_IMAGE ]] || nb_die "kubeadm config images list named no pause image"
}

mirror_for() { # IMAGE -> the mirror URL configured for its registry, or ""
    local registry=${1%%/*}
    printf '%s' "${NB_MIRROR[$registry]:-}"
}

stage_config() {
    local image=$1 registry server ca_line="" mirror
    stage_file /etc/systemd/system/containerd.service "[Unit]
Description=containerd container runtime (installed by nodeboot)
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target"
    stage_file /etc/systemd/system/kubelet.service "[Unit]
Description=kubelet: the Kubernetes node agent (installed by nodeboot)
Documentation=https://kubernetes.io/docs/
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStart=/usr/local/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target"
    # kubeadm join writes kubeadm-flags.env and config.yaml, then restarts the kubelet.
    stage_file /etc/systemd/system/kubelet.service.d/10-kubeadm.conf "# Written by nodeboot: the kubelet as kubeadm runs it.
[Service]
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"
# kubeadm's per-node flags (KUBELET_KUBEADM_ARGS), written at join time.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# The operator's own flags (KUBELET_EXTRA_ARGS).
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/local/bin/kubelet \$KUBELET_KUBECONFIG_ARGS \$KUBELET_CONFIG_ARGS \$KUBELET_KUBEADM_ARGS \$KUBELET_EXTRA_ARGS"
    if [[ -n ${NB_REGISTRY_CA:-} ]]; then
        stage_file /etc/containerd/certs.d/nodeboot-registry-ca.crt "$NB_REGISTRY_CA"
        ca_line="  ca = \"/etc/containerd/certs.d/nodeboot-registry-ca.crt\""
    fi
    for registry in "${NB_REGISTRIES[@]}"; do
        mirror=${NB_MIRROR[$registry]}
        server="https://$registry"
        [[ $registry == docker.io ]] && server=https://registry-1.docker.io
        stage_file "/etc/containerd/certs.d/$registry/hosts.toml" "# Written by nodeboot: pull $registry through $mirror.
server = \"$server\"

[host.\"$mirror\"]
  capabilities = [\"pull\", \"resolve\"]
${ca_line}"
    done
    stage_file /etc/containerd/config.toml "# Written by nodeboot for containerd 2.x.
version = 3

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$image'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '/etc/containerd/certs.d'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
  # The kubelet's cgroup driver from kubeadm is systemd; the runtime must match.
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = true"
    stage_file /etc/modules-load.d/nodeboot-k8s.conf "# Written by nodeboot: container networking needs these at boot.
overlay
br_netfilter"
    stage_file /etc/sysctl.d/90-nodeboot-k8s.conf "# Written by nodeboot: pods' traffic crosses bridges and is forwarded.
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1"
}

# Move every staged file that differs from the host's copy into place, by a
# rename in the target directory. NB_REPLACED lists what was replaced.
place_files() {
    local staged path dest mode
    while IFS= read -r -d '' staged; do
        path=${staged#"$NB_TMP/stage"}
        dest=$NB_ROOT$path
        cmp -s "$staged" "$dest" && continue
        mode=0644
        [[ -x $staged ]] && mode=0755
        if ! install -D -m "$mode" "$staged" "$dest.nodeboot-new" || ! mv -f "$dest.nodeboot-new" "$dest"; then
            rm -f "$dest.nodeboot-new"
            nb_die "cannot write $dest (already replaced: ${NB_REPLACED[*]:-none}); re-run to finish"
        fi
        NB_REPLACED+=("$path")
    done < <(find "$NB_TMP/stage" -type f -print0 | sort -z)
    (( ${#NB_REPLACED[@]} )) && nb_changed "installed ${NB_REPLACED[*]}"
    return 0
}

replaced() { # PATTERN: was a file matching it replaced?
    local path
    # shellcheck disable=SC2053 # $1 is a glob on purpose
    for path in "${NB_REPLACED[@]}"; do [[ $path == $1 ]] && return 0; done
    return 1
}

prepare_kernel() {
    modprobe -a overlay br_netfilter </dev/null || nb_die "modprobe -a overlay br_netfilter failed"
    sysctl -q -p "$NB_ROOT/etc/sysctl.d/90-nodeboot-k8s.conf" </dev/null >/dev/null \
        || nb_die "sysctl -p /etc/sysctl.d/90-nodeboot-k8s.conf failed (is br_netfilter loaded?)"
}

disable_swap() {
    local swaps=$NB_ROOT/proc/swaps fstab=$NB_ROOT/etc/fstab unit
    if [[ -r $swaps ]] && (( $(wc -l < "$swaps") > 1 )); then
        swapoff -a </dev/null || nb_die "swapoff -a failed"
        nb_changed "swapoff -a"
    fi
    # Kept off across reboots: fstab's swap lines commented out, swap units masked.
    if [[ -f $fstab ]] && grep -qE '^[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]' "$fstab"; then
        sed -i -E 's/^([^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$/# nodeboot --disable-swap: \1/' "$fstab" \
            || nb_die "cannot comment out the swap lines of /etc/fstab"
        nb_changed "commented out the swap lines of /etc/fstab"
    fi
    while read -r unit _; do
        [[ $unit == *.swap ]] || continue
        [[ $(systemctl is-enabled "$unit" 2>/dev/null </dev/null) == masked ]] && continue
        systemctl mask "$unit" </dev/null >/dev/null || nb_die "systemctl mask $unit failed"
        nb_changed "masked $unit"
    done < <(systemctl list-units --type=swap --all --plain --no-legend 2>/dev/null </dev/null)
}

services() {
    replaced '/etc/systemd/system/*' && { systemctl daemon-reload </dev/null || nb_die "systemctl daemon-reload failed"; }
    local unit
    for unit in containerd kubelet; do
        if ! systemctl is-enabled --quiet "$unit" </dev/null 2>/dev/null; then
            systemctl enable "$unit" </dev/null || nb_die "systemctl enable $unit failed"
            nb_changed "enabled $unit"
        fi
    done
    if replaced '/usr/local/bin/containerd*' || replaced /usr/local/sbin/runc \
        || replaced /etc/containerd/config.toml || replaced /etc/systemd/system/containerd.service; then
        systemctl restart containerd </dev/null || nb_die "systemctl restart containerd failed"
        nb_changed "restarted containerd"
    elif ! systemctl is-active --quiet containerd </dev/null; then
        systemctl start containerd </dev/null || nb_die "systemctl start containerd failed"
        nb_changed "started containerd"
    fi
    # kubeadm join starts the kubelet; one already running gets its new binary or unit.
    if systemctl is-active --quiet kubelet </dev/null \
        && { replaced /usr/local/bin/kubelet || replaced '/etc/systemd/system/kubelet.service*'; }; then
        systemctl restart kubelet </dev/null || nb_die "systemctl restart kubelet failed"
        nb_changed "restarted kubelet"
    fi
}

# Pull the sandbox image now, through the configured mirror, so a registry the
# node cannot reach fails here, naming the image and the mirror.
pull_sandbox() {
    local image=$1 ctr="$NB_ROOT/usr/local/bin/ctr" tries=0 out mirror
    until "$ctr" --address "$NB_CONTAINERD_SOCK" version >/dev/null 2>&1 </dev/null; do
        tries=$((tries + 1))
        (( tries < 60 )) || nb_die "containerd did not answer on $NB_CONTAINERD_SOCK within 30s (journalctl -u containerd)"
        sleep 0.5
    done
    out=$("$ctr" --address "$NB_CONTAINERD_SOCK" -n k8s.io images ls -q 2>&1 </dev/null) \
        || nb_die "ctr images ls failed: $(tail -n 1 <<<"$out")"
    grep -qxF "$image" <<<"$out" && return 0
    mirror=$(mirror_for "$image")
    if ! out=$("$ctr" --address "$NB_CONTAINERD_SOCK" -n k8s.io images pull \
        --hosts-dir "$NB_ROOT/etc/containerd/certs.d" "$image" 2>&1 </dev/null); then
        nb_die "cannot pull $image ${mirror:+through the mirror $mirror}${mirror:-directly (no mirror for ${image%%/*})}: $(grep -v '^\s*$' <<<"$out" | tail -n 1) (the node parts are in place; a re-run pulls again)"
    fi
    nb_changed "pulled $image"
}

write_state() {
    local file=$NB_ROOT$NB_STATE_FILE new kind path
    new="key ${NB_INSTALL_KEY:-}"
    for kind in "${NB_KINDS[@]}"; do new+=$'\n'"version $kind ${NB_VERSION[$kind]}"; done
    while IFS= read -r -d '' path; do
        path=${path#"$NB_TMP/stage"}
        [[ $path == /etc/* ]] || continue
        new+=$'\n'"file $(sha256sum "$NB_ROOT$path" | awk '{print $1}') $path"
    done < <(find "$NB_TMP/stage" -type f -print0 | sort -z)
    [[ -f $file && $(cat "$file") == "$new" ]] && return 0
    { mkdir -p "$(dirname "$file")" && printf '%s\n' "$new" > "$file.new" && mv -f "$file.new" "$file"; } \
        || nb_die "cannot write $file"
}

main() {
    read_inputs
    local kind image
    if [[ $NB_DRY_RUN == 1 ]]; then
        for kind in "${NB_KINDS[@]}"; do
            nb_changed "would install $kind ${NB_VERSION[$kind]} from ${NB_URL[$kind]}"
        done
        for kind in "${NB_REGISTRIES[@]}"; do nb_changed "would pull $kind images through ${NB_MIRROR[$kind]}"; done
        [[ $NB_DISABLE_SWAP == 1 ]] && nb_changed "would turn swap off and keep it off"
        nb_ok
    fi
    command -v curl >/dev/null || nb_die "curl is not installed on this host (nodeboot's install downloads with it)"
    nb_lock
    umask 022
    NB_TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/nodeboot-install.XXXXXXXX") || nb_die "cannot make a temp dir"
    trap nb_tmp_cleanup EXIT
    mkdir -p "$NB_TMP/dl" "$NB_TMP/stage"
    if [[ -n ${NB_ARTIFACTS_CA:-} ]]; then
        printf '%s\n' "$NB_ARTIFACTS_CA" > "$NB_TMP/artifacts-ca.crt"
        NB_CURL_ARGS+=(--cacert "$NB_TMP/artifacts-ca.crt")
    fi
    stage_artifacts
    sandbox_image
    image=$NB_SANDBOX_IMAGE
    nb_fact_str sandbox_image "$image"
    stage_config "$image"
    place_files
    prepare_kernel
    [[ $NB_DISABLE_SWAP == 1 ]] && disable_swap
    services
    pull_sandbox "$image"
    write_state
    nb_ok
}

main </dev/null
