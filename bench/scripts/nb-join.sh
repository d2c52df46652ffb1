# nodeboot bench phase "join": the command standing in for kubeadm join.
# Inputs: NB_ROOT NB_JOIN_FORMAT NB_HOSTNAME NB_KERNEL NB_ARCH NB_SWAP (the gathered facts)
set -eu
j="$NB_ROOT/etc/kubernetes/kubelet.conf"
if [ -f "$j" ]; then printf '{"ok":true,"changed":false}\n'; exit 0; fi
# shellcheck disable=SC2059
printf "$NB_JOIN_FORMAT" "$NB_HOSTNAME" "$NB_KERNEL" "$NB_ARCH" "$NB_SWAP" > "$j"
printf '{"ok":true,"changed":true}\n'
