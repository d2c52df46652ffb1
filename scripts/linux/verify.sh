# verify.sh: what `nodeboot verify` checks on a joined Linux node (read only).
#
# Inputs (NB_* variables):
#   NB_SERVICE_ADDR   the `kubernetes` Service's ClusterIP (IPv4 or IPv6); empty: skip the connect
#   NB_SERVICE_PORT   its port (default 443)
#   NB_SERVICE2_ADDR  on a dual-stack node: a Service ClusterIP of the other IP family; empty: none
#   NB_SERVICE2_PORT  its port
#   NB_PROXY_METRICS  where kube-proxy answers /proxyMode (default 127.0.0.1:10249)
#   NB_TIMEOUT        seconds for each network try (default 2)
#
# Facts: time (epoch seconds, for the clock skew), proxy_mode (what kube-proxy says,
# "" if it did not answer), proxy_mode_error, service_reachable, service_connect_ms,
# service_error (service2_reachable, service2_connect_ms, service2_error for NB_SERVICE2_ADDR),
# cni_configs (file names in /etc/cni/net.d), containerd_systemd_cgroup
# ("true" | "false" | "" when containerd's config could not be read), containerd_config_source,
# kubelet_cgroup_driver ("" when /var/lib/kubelet/config.yaml is missing), kubelet_cert_not_after
# (epoch seconds, "" when the certificate is missing or unreadable), kubelet_cert_error.
#
# bash's /dev/tcp does the network part, so the node needs no curl.
# shellcheck disable=SC2016 # the inner bash -c scripts expand their own arguments
NB_SCRIPT=verify.sh

# tcp_try HOST PORT: connect within NB_TIMEOUT seconds.
tcp_try() {
    timeout "$TIMEOUT" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

check_proxy_mode() {
    local host=${METRICS%:*} port=${METRICS##*:} reply body
    if reply=$(timeout "$TIMEOUT" bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET /proxyMode HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
        cat <&3' _ "$host" "$port" 2>/dev/null); then
        body=${reply##*$'\r\n\r\n'}
        if [[ $reply == "HTTP/1."[01]" 200"* ]]; then
            nb_fact_str proxy_mode "${body//[[:space:]]/}"
            nb_fact_str proxy_mode_error ""
            return
        fi
        nb_fact_str proxy_mode ""
        nb_fact_str proxy_mode_error "http://$METRICS/proxyMode answered: ${reply%%$'\r'*}"
        return
    fi
    nb_fact_str proxy_mode ""
    nb_fact_str proxy_mode_error "nothing answers on $METRICS (kube-proxy not running on this node?)"
}

# check_service FACT ADDR PORT: the facts FACT_reachable, FACT_connect_ms, FACT_error.
check_service() {
    local fact=$1 addr=$2 port=$3 started ended
    if [[ -z $addr ]]; then
        nb_fact "${fact}_reachable" null
        nb_fact_str "${fact}_error" "no Service address given"
        return
    fi
    started=$(date +%s%N)
    if tcp_try "$addr" "$port"; then
        ended=$(date +%s%N)
        nb_fact "${fact}_reachable" true
        nb_fact "${fact}_connect_ms" "$(((ended - started) / 1000000))"
        nb_fact_str "${fact}_error" ""
    else
        nb_fact "${fact}_reachable" false
        nb_fact "${fact}_connect_ms" null
        nb_fact_str "${fact}_error" "TCP connect to $addr:$port failed within ${TIMEOUT}s"
    fi
}

check_cni() {
    local f names=()
    for f in /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json; do
        [[ -f $f ]] && names+=("${f##*/}")
    done
    nb_fact_list cni_configs "${names[@]}"
}

# containerd's runc cgroup setting: its merged view (`containerd config dump`) when
# the binary is there, else its config file; containerd's default is cgroupfs.
check_containerd() {
    local text="" source="" value=""
    if command -v containerd >/dev/null 2>&1 && text=$(timeout 10 containerd config dump 2>/dev/null); then
        source="containerd config dump"
    elif [[ -r /etc/containerd/config.toml ]]; then
        text=$(</etc/containerd/config.toml)
        source=/etc/containerd/config.toml
    fi
    if [[ -n $source ]]; then
        value=false
        if grep -qE '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' <<<"$text"; then value=true; fi
    fi
    nb_fact_str containerd_systemd_cgroup "$value"
    nb_fact_str containerd_config_source "$source"
}

check_kubelet() {
    local driver="" config=/var/lib/kubelet/config.yaml cert=/var/lib/kubelet/pki/kubelet-client-current.pem end=""
    if [[ -r $config ]]; then
        # KubeletConfiguration's default is cgroupfs; kubeadm writes systemd.
        driver=$(awk -F: '$1 == "cgroupDriver" { gsub(/[ "\047]/, "", $2); print $2 }' "$config")
        driver=${driver:-cgroupfs}
    fi
    nb_fact_str kubelet_cgroup_driver "$driver"
    if [[ ! -e $cert ]]; then
        nb_fact_str kubelet_cert_error "$cert is missing"
    elif ! command -v openssl >/dev/null 2>&1; then
        nb_fact_str kubelet_cert_error "openssl is not installed: cannot read $cert"
    elif end=$(openssl x509 -enddate -noout -in "$cert" 2>/dev/null) && end=$(date -d "${end#notAfter=}" +%s); then
        nb_fact_str kubelet_cert_error ""
    else
        end=""
        nb_fact_str kubelet_cert_error "cannot read the expiry of $cert"
    fi
    nb_fact_str kubelet_cert_not_after "$end"
}

main() {
    export LC_ALL=C
    SERVICE_ADDR=${NB_SERVICE_ADDR:-}
    SERVICE_PORT=${NB_SERVICE_PORT:-443}
    METRICS=${NB_PROXY_METRICS:-127.0.0.1:10249}
    TIMEOUT=${NB_TIMEOUT:-2}
    [[ $SERVICE_PORT =~ ^[0-9]+$ ]] || nb_die "NB_SERVICE_PORT must be a port number, got '$SERVICE_PORT'"
    [[ $TIMEOUT =~ ^[0-9]+(\.[0-9]+)?$ ]] || nb_die "NB_TIMEOUT must be seconds, got '$TIMEOUT'"
    [[ $METRICS == *:* ]] || nb_die "NB_PROXY_METRICS must be HOST:PORT, got '$METRICS'"
    nb_fact_str time "$(date +%s.%N)"
    check_proxy_mode
    check_service service "$SERVICE_ADDR" "$SERVICE_PORT"
    if [[ -n ${NB_SERVICE2_ADDR:-} ]]; then
        [[ ${NB_SERVICE2_PORT:-} =~ ^[0-9]+$ ]] || nb_die "NB_SERVICE2_PORT must be a port number, got '${NB_SERVICE2_PORT:-}'"
        check_service service2 "$NB_SERVICE2_ADDR" "$NB_SERVICE2_PORT"
    fi
    check_cni
    check_containerd
    check_kubelet
    nb_ok
}

main </dev/null
