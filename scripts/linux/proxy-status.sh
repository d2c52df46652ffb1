# proxy-status.sh: how many IPVS virtual servers this node has (read only).
NB_SCRIPT=proxy-status.sh

main() {
    local count
    if count=$(ipvsadm -Ln 2>/dev/null | grep -cE '^(TCP|UDP|SCTP)'); then
        nb_fact virtual_servers "$count"
    else
        nb_fact virtual_servers 0
    fi
    nb_ok
}

main </dev/null
