# facts.sh: everything nodeboot decides with, gathered in one round trip.
# Inputs: NB_MODULES_FILE (where nodeboot persists IPVS modules); NB_JOINED_FACTS=brief (optional:
# a joined host reports only what it is, that it is joined, and its lock, with brief=true).
NB_SCRIPT=facts.sh

# The versions of the node's binaries, keyed by each file's identity (inode, ctime, size,
# one stat for all): a Go binary's --version costs tens of milliseconds of the host's CPU,
# and a re-run asks the same files again. The cache lives in /run (tmpfs: gone at boot), in
# the 0700 directory join.sh works in; replacing or rewriting a binary changes its ctime,
# so it is asked again. Without a writable /run every binary is asked each time.
NB_VERSION_CACHE=${NB_VERSION_CACHE:-/run/nodeboot/versions}
declare -A NB_VERSION_PATH=() NB_VERSION_KEY=() NB_VERSION_CACHED=() NB_VERSION=()
NB_VERSION_ASKED=0

# versions_begin NAME...: each binary found on PATH, its identity, and what the cache holds.
versions_begin() {
    local name path key cname ckey cversion
    local -A name_of=()
    for name in "$@"; do
        hash "$name" 2>/dev/null || continue  # bash's own PATH search, into BASH_CMDS: no fork
        path=${BASH_CMDS[$name]}
        NB_VERSION_PATH[$name]=$path
        name_of[$path]=$name
    done
    (( ${#NB_VERSION_PATH[@]} )) || return 0
    # Each line names its file: one stat cannot read leaves no key (that binary is asked, not
    # cached) and no other binary's key wrong. Without stat every binary is asked.
    while read -r key path; do
        [[ -v "name_of[$path]" ]] && NB_VERSION_KEY[${name_of[$path]}]="$path:$key"
    done < <(stat -L -c '%i:%Z:%s %n' -- "${NB_VERSION_PATH[@]}" 2>/dev/null)
    if [[ -r $NB_VERSION_CACHE ]]; then
        while read -r cname ckey cversion; do
            [[ -n $cname && -n ${NB_VERSION_KEY[$cname]:-} && ${NB_VERSION_KEY[$cname]} == "$ckey" ]] \
                && NB_VERSION_CACHED[$cname]=$cversion
        done < "$NB_VERSION_CACHE"
    fi
}

# version_of NAME FIELD COMMAND...: NAME's version into NB_VERSION[NAME] (FIELD, counted
# from 1, of the first line COMMAND prints), from the cache when the binary is the one
# cached; unset when NAME is not on PATH. Called as a statement, never in $(...): the
# answer must reach versions_end.
version_of() {
    local name=$1 field=$2 out
    local -a words
    shift 2
    [[ -v "NB_VERSION_PATH[$name]" ]] || return 0
    if [[ -v "NB_VERSION_CACHED[$name]" ]]; then
        NB_VERSION[$name]=${NB_VERSION_CACHED[$name]}
    else
        NB_VERSION_ASKED=1
        out=$("$@" 2>/dev/null </dev/null)
        read -ra words <<<"${out%%$'\n'*}"
        NB_VERSION[$name]=${words[field - 1]:-}
    fi
}

# versions_end: the cache rewritten when a binary was asked (a version that could not
# be read stays out of it, so it is asked again next time).
versions_end() {
    local name body="" dir=${NB_VERSION_CACHE%/*}
    (( NB_VERSION_ASKED )) || return 0
    for name in "${!NB_VERSION[@]}"; do
        [[ -n ${NB_VERSION[$name]} && -n ${NB_VERSION_KEY[$name]:-} ]] \
            && body+="$name ${NB_VERSION_KEY[$name]} ${NB_VERSION[$name]}"$'\n'
    done
    { [[ -d $dir ]] || mkdir -m 0700 "$dir" 2>/dev/null; } && [[ -w $dir ]] || return 0
    { printf '%s' "$body" > "$NB_VERSION_CACHE.$NB_PID" && mv -f "$NB_VERSION_CACHE.$NB_PID" "$NB_VERSION_CACHE"; } 2>/dev/null \
        || rm -f "$NB_VERSION_CACHE.$NB_PID"
}

# What nodeboot's install left (install.sh's state file: its key and the sha256 of
# each config file it wrote) and the parts a join needs. Paths honour NB_ROOT (tests).
install_facts() {
    local root=${NB_ROOT:-} p plugins=() kind hash path key="" ok=0 paths=() sums=() line i=0
    nb_fact_if runc test -v "NB_VERSION_PATH[runc]"
    for p in bridge host-local loopback portmap; do [[ -x $root/opt/cni/bin/$p ]] && plugins+=("$p"); done
    nb_fact_list cni_plugins "${plugins[@]}"
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
        version_of containerd 3 containerd --version
        version_of runc 3 runc --version
        nb_fact_str containerd_version "${NB_VERSION[containerd]:-}"
        nb_fact_str runc_version "${NB_VERSION[runc]:-}"
    fi
    nb_fact_str install_key "$key"
    nb_fact_bool install_files_ok $ok
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
    nb_fact_bool cri_answered $ok
    # The runtime's name and version, or (when it did not answer) its client's last line.
    nb_fact_str cri_version "${out##*$'\n'}"
}

# read_first VAR FILE DEFAULT: FILE's first line into VAR, or DEFAULT when it cannot be read.
read_first() {
    local _nb_line
    if [[ -r $2 ]] && IFS= read -r _nb_line < "$2"; then printf -v "$1" '%s' "$_nb_line"
    else printf -v "$1" '%s' "$3"; fi
}

# lock_fact: what another run left in the host lock (its run id, when, its shell), or "".
lock_fact() {
    local owner=""
    [[ -f $NB_LOCK_DIR/owner ]] && read_first owner "$NB_LOCK_DIR/owner" ""
    nb_fact_str lock "$owner"
}

# Most of what follows reads /proc, /sys and files with bash builtins: on a re-run this script
# is all nodeboot asks of a host, and every process it starts is CPU the host spends.
main() {
    local os_id="" os_version="" pretty="" key value
    if [[ -r /etc/os-release ]]; then
        while IFS='=' read -r key value; do
            value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
            case $key in
                ID) os_id=$value ;;
                VERSION_ID) os_version=$value ;;
                PRETTY_NAME) pretty=$value ;;
            esac
        done < /etc/os-release
    fi
    nb_fact_str os_id "$os_id"
    nb_fact_str os_version "$os_version"
    nb_fact_str os_pretty "$pretty"
    # uname's two fields from the kernel's own sysctls (kernel.arch is Linux 6.1 and later):
    # uname is a process started on every host of every run for two words.
    local kernel arch
    read_first kernel /proc/sys/kernel/osrelease ""
    read_first arch /proc/sys/kernel/arch ""
    [[ -n $kernel ]] || kernel=$(uname -r)
    [[ -n $arch ]] || arch=$(uname -m)
    nb_fact_str kernel "$kernel"
    nb_fact_str arch "$arch"
    local hostname
    read_first hostname /proc/sys/kernel/hostname "${HOSTNAME:-}"
    nb_fact_str hostname "$hostname"
    local now=${EPOCHREALTIME:-}  # bash 5; its decimal point follows the locale
    [[ -n $now ]] || now=$(date +%s.%N)
    nb_fact_str time "${now/,/.}"
    local root=${NB_ROOT:-} joined=0
    [[ -f $root/etc/kubernetes/kubelet.conf ]] && joined=1
    nb_fact_bool joined $joined
    nb_fact_if kubelet_configured test -f "$root/var/lib/kubelet/config.yaml"
    # A join's re-run of a joined host reads nothing more (nodeboot asks for brief facts only then):
    # the rest, above all the binaries' versions (a stat process at least), is host CPU for nothing.
    if (( joined )) && [[ ${NB_JOINED_FACTS:-} == brief ]]; then
        nb_fact brief true
        lock_fact
        nb_ok
    fi
    versions_begin kubeadm kubelet containerd runc
    version_of kubeadm 1 kubeadm version -o short
    version_of kubelet 2 kubelet --version
    nb_fact_str kubeadm_version "${NB_VERSION[kubeadm]:-}"
    nb_fact_str kubelet_version "${NB_VERSION[kubelet]:-}"
    local sock=$root/run/containerd/containerd.sock
    nb_fact_if cri_socket test -S "$sock"
    # Only the join's preflight reads the runtime's answer, and a joined host skips it: asking
    # would start a Go client on every re-run for nothing.
    if (( joined )); then nb_fact_str cri_check joined; nb_fact cri_answered false; nb_fact_str cri_version ""
    else cri_facts "$sock"; fi
    # What a CNI leaves that reset.sh removes (its chains are only looked at by reset.sh itself).
    local cni_left=0 link
    local -a conf=()
    [[ -d /etc/cni/net.d ]] && { shopt -s nullglob dotglob; conf=(/etc/cni/net.d/*); shopt -u nullglob dotglob; }
    [[ -d /var/lib/cni ]] || (( ${#conf[@]} )) && cni_left=1
    for link in cni0 flannel.1 vxlan.calico; do [[ -e /sys/class/net/$link ]] && cni_left=1; done
    nb_fact_bool cni_leftovers $cni_left
    local -a swaps=()
    [[ -r /proc/swaps ]] && mapfile -t swaps < /proc/swaps
    nb_fact_bool swap_on "$(( ${#swaps[@]} > 1 ))"
    read_first value /proc/sys/net/ipv4/ip_forward missing
    nb_fact_str ip_forward "$value"
    read_first value /proc/sys/net/bridge/bridge-nf-call-iptables missing
    nb_fact_str bridge_nf_call_iptables "$value"
    read_first value /proc/sys/net/ipv6/conf/all/forwarding missing
    nb_fact_str ipv6_forward "$value"
    local module rest mods=()
    if [[ -r /proc/modules ]]; then
        while read -r module rest; do
            [[ $module == ip_vs* || $module == nf_conntrack* || $module == br_netfilter* ]] && mods+=("$module")
        done < /proc/modules
    fi
    (( ${#mods[@]} )) && mapfile -t mods < <(printf '%s\n' "${mods[@]}" | sort)
    nb_fact_list modules_loaded "${mods[@]}"
    local mfile=${NB_MODULES_FILE:-/etc/modules-load.d/nodeboot-ipvs.conf}
    nb_fact_if modules_file test -f "$mfile"
    local tool present=()
    for tool in ipset ipvsadm nft iptables conntrack; do
        command -v "$tool" >/dev/null 2>&1 && present+=("$tool")
    done
    nb_fact_list tools "${present[@]}"
    local pm=""
    for tool in apt-get dnf yum zypper; do command -v "$tool" >/dev/null 2>&1 && { pm=$tool; break; }; done
    nb_fact_str package_manager "$pm"
    install_facts
    versions_end
    lock_fact
    nb_ok
}

main </dev/null
