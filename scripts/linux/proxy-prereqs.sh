#!/usr/bin/env bash
# proxy-prereqs.sh: make a Linux host ready for kube-proxy's chosen mode.
#
# Inputs (NB_* variables, exported ahead of this script on stdin):
#   NB_PROXY_MODE         ipvs | nftables | iptables                  (required)
#   NB_INSTALL_PACKAGES   0 | 1  install missing tools (apt-get/dnf/yum/zypper)  (default 0)
#   NB_MODULES_FILE       where the IPVS module list is persisted
#                         (default /etc/modules-load.d/nodeboot-ipvs.conf)
#   NB_DRY_RUN            0 | 1  report what would change, change nothing  (default 0)
#
# Output: human text on stderr, then exactly one JSON line on stdout:
#   {"ok":bool,"changed":bool,"facts":{...},"error":"..."}
# facts: mode, kernel, dry_run, modules_required, modules_loaded,
#   modules_loaded_now, modules_file, modules_file_written,
#   modules_file_written_by_nodeboot, tools {name: bool}, packages_installed,
#   actions (what changed, or in a dry run what would change).
#
# Commands are called by plain name (never /sbin/...): the lab puts stand-ins
# for modprobe, lsmod, ipvsadm, ... first on PATH on hosts without IPVS.
# Everything runs inside main(), called with stdin from /dev/null, because
# bash reads this very script from stdin: a child that read stdin would eat
# the rest of the script.

MARKER='# managed-by: nodeboot proxy-prereqs.sh'

NB_SCRIPT=proxy-prereqs.sh

# ---- inputs ---------------------------------------------------------------
read_inputs() {
    MODE=${NB_PROXY_MODE:-}
    INSTALL=${NB_INSTALL_PACKAGES:-0}
    DRY_RUN=${NB_DRY_RUN:-0}
    MODULES_FILE=${NB_MODULES_FILE:-/etc/modules-load.d/nodeboot-ipvs.conf}
    nb_flag NB_INSTALL_PACKAGES "$INSTALL"
    nb_flag NB_DRY_RUN "$DRY_RUN"
    case $MODE in
        ipvs | nftables | iptables) ;;
        '') nb_die "NB_PROXY_MODE is not set (expected ipvs, nftables or iptables)" ;;
        *) nb_die "NB_PROXY_MODE '$MODE' is not a kube-proxy mode (expected ipvs, nftables or iptables)" ;;
    esac
    [[ $MODULES_FILE == /* ]] || nb_die "NB_MODULES_FILE must be an absolute path, got '$MODULES_FILE'"
    NB_SAY_PREFIX=""
    if [[ $DRY_RUN == 1 ]]; then NB_SAY_PREFIX="(dry run) would "; fi
    nb_fact_str mode "$MODE"
    nb_fact_bool dry_run "$DRY_RUN"
}

# ---- kernel ---------------------------------------------------------------
read_kernel() {
    KERNEL=$(uname -r)
    nb_fact_str kernel "$KERNEL"
    if [[ $KERNEL =~ ^([0-9]+)\.([0-9]+) ]]; then
        KMAJOR=${BASH_REMATCH[1]}
        KMINOR=${BASH_REMATCH[2]}
    else
        nb_die "cannot read the kernel version from uname -r: '$KERNEL'"
    fi
}

# kernel_at_least MAJOR MINOR
kernel_at_least() {
    ((KMAJOR > $1 || (KMAJOR == $1 && KMINOR >= $2)))
}

# ---- modules ---------------------------------------------------------------
ipvs_modules() {
    REQUIRED=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh)
    # The IPv4 conntrack module was folded into nf_conntrack in 4.19.
    if kernel_at_least 4 19; then REQUIRED+=(nf_conntrack); else REQUIRED+=(nf_conntrack_ipv4); fi
}

load_modules() {
    local missing=() name loaded=()
    nb_read_modules
    for name in "${REQUIRED[@]}"; do
        nb_module_loaded "$name" || missing+=("$name")
    done
    nb_fact_list modules_required "${REQUIRED[@]}"
    if ((${#missing[@]} > 0)); then
        nb_changed "load modules ${missing[*]}"
        if [[ $DRY_RUN == 0 ]]; then
            # -a: without it modprobe loads only the first name and takes the
            # others as module parameters.
            modprobe -a "${missing[@]}" >&2 || nb_die "modprobe -a ${missing[*]} failed on kernel $KERNEL"
            nb_read_modules
        fi
    fi
    for name in "${REQUIRED[@]}"; do
        if nb_module_loaded "$name"; then loaded+=("$name"); fi
    done
    if [[ $DRY_RUN == 0 && ${#loaded[@]} -ne ${#REQUIRED[@]} ]]; then
        nb_die "modprobe ran but lsmod still lacks some of ${REQUIRED[*]} (kernel $KERNEL)"
    fi
    nb_fact_list modules_loaded "${loaded[@]}"
    nb_fact_list modules_loaded_now "${missing[@]}"
}

modules_file_content() {
    printf '%s\n' "$MARKER" \
        "# Kernel modules kube-proxy's IPVS mode needs, loaded at boot by systemd-modules-load." \
        "# nodeboot's reset removes this file; delete the first line to keep it." \
        "${REQUIRED[@]}"
}

file_is_ours() {
    [[ -f $1 ]] && grep -qxF -- "$MARKER" "$1"
}

persist_modules() {
    local want written=false name
    want=$(modules_file_content)
    if [[ -e $MODULES_FILE ]] && ! file_is_ours "$MODULES_FILE"; then
        # Someone else's file: leave it alone. It is enough if it already lists every module.
        for name in "${REQUIRED[@]}"; do
            grep -qE "^[[:space:]]*${name}([[:space:]]|\$)" "$MODULES_FILE" ||
                nb_die "$MODULES_FILE was not written by nodeboot and does not list $name; add the IPVS modules to it or set NB_MODULES_FILE to another path"
        done
    elif [[ ! -f $MODULES_FILE || "$(cat "$MODULES_FILE")" != "$want" ]]; then
        nb_changed "write $MODULES_FILE"
        if [[ $DRY_RUN == 0 ]]; then
            mkdir -p "$(dirname "$MODULES_FILE")"
            printf '%s\n' "$want" >"$MODULES_FILE.nodeboot.$NB_PID"
            chmod 0644 "$MODULES_FILE.nodeboot.$NB_PID"
            mv -f "$MODULES_FILE.nodeboot.$NB_PID" "$MODULES_FILE"
        fi
        written=true
    fi
    nb_fact modules_file_written "$written"
}

# ---- tools ----------------------------------------------------------------
have() {
    command -v "$1" >/dev/null 2>&1
}

package_manager() {
    local pm
    for pm in apt-get dnf yum zypper; do
        if have "$pm"; then
            echo "$pm"
            return 0
        fi
    done
    return 1
}

install_packages() {
    local pm
    pm=$(package_manager) || nb_die "no apt-get, dnf, yum or zypper to install $*"
    nb_changed "install $* with $pm"
    if [[ $DRY_RUN == 1 ]]; then return 0; fi
    case $pm in
        apt-get)
            # A fresh host may have no package lists yet: update once and retry.
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
                { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
                    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; } ||
                nb_die "apt-get could not install $*"
            ;;
        dnf | yum) "$pm" install -y -q "$@" >&2 || nb_die "$pm could not install $*" ;;
        zypper) zypper --non-interactive install "$@" >&2 || nb_die "zypper could not install $*" ;;
    esac
}

# ensure_tools "command:package" ...: every command present, installing when allowed.
ensure_tools() {
    local pair cmd missing_cmds=() missing_pkgs=() tools="" encoded
    for pair in "$@"; do
        cmd=${pair%%:*}
        have "$cmd" || { missing_cmds+=("$cmd") && missing_pkgs+=("${pair#*:}"); }
    done
    if ((${#missing_cmds[@]} > 0)); then
        if [[ $INSTALL == 1 ]]; then
            install_packages "${missing_pkgs[@]}"
        else
            nb_die "kube-proxy mode $MODE needs ${missing_cmds[*]}, which this host lacks; install ${missing_pkgs[*]} or set NB_INSTALL_PACKAGES=1"
        fi
    fi
    for pair in "$@"; do
        cmd=${pair%%:*}
        if [[ $DRY_RUN == 0 ]] && ! have "$cmd"; then
            nb_die "${pair#*:} was installed but $cmd is still not on PATH"
        fi
        nb_json_into encoded "$cmd"
        if have "$cmd"; then tools+="${tools:+,}$encoded:true"; else tools+="${tools:+,}$encoded:false"; fi
    done
    nb_fact tools "{$tools}"
    if [[ $INSTALL == 1 && ${#missing_pkgs[@]} -gt 0 ]]; then
        nb_fact_list packages_installed "${missing_pkgs[@]}"
    else
        nb_fact packages_installed "[]"
    fi
}

# ---- modes ----------------------------------------------------------------
prepare_ipvs() {
    ensure_tools ipvsadm:ipvsadm ipset:ipset
    ipvs_modules
    load_modules
    persist_modules
}

prepare_nftables() {
    # kube-proxy's nftables mode needs kernel 5.13 or newer.
    kernel_at_least 5 13 || nb_die "kube-proxy nftables mode needs kernel 5.13 or newer; this host runs $KERNEL"
    ensure_tools nft:nftables
}

prepare_iptables() {
    ensure_tools iptables:iptables iptables-save:iptables iptables-restore:iptables
}

report_modules_file() {
    [[ -v "NB_FACTS[modules_required]" ]] || nb_fact modules_required "[]"
    [[ -v "NB_FACTS[modules_loaded]" ]] || nb_fact modules_loaded "[]"
    [[ -v "NB_FACTS[modules_loaded_now]" ]] || nb_fact modules_loaded_now "[]"
    nb_fact_str modules_file "$MODULES_FILE"
    [[ -v "NB_FACTS[modules_file_written]" ]] || nb_fact modules_file_written false
    # In a dry run nothing was written, so ownership follows what would be written.
    if file_is_ours "$MODULES_FILE" || [[ $DRY_RUN == 1 && ${NB_FACTS[modules_file_written]} == true ]]; then
        nb_fact modules_file_written_by_nodeboot true
    else
        nb_fact modules_file_written_by_nodeboot false
    fi
}

main() {
    export LC_ALL=C
    trap 'nb_die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
    set -Eeuo pipefail
    read_inputs
    read_kernel
    "prepare_$MODE"
    report_modules_file
    nb_ok
}

main </dev/null
