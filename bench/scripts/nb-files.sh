# nodeboot bench phase "node-files": directories and the two config files,
# each written only when it differs. Inputs: NB_ROOT NB_MODULES NB_SYSCTL
set -eu
R=$NB_ROOT
mkdir -p "$R/etc/kubernetes/manifests" "$R/var/lib/kubelet" "$R/opt/nodeboot" "$R/etc/modules-load.d" "$R/etc/sysctl.d"
changed=false
put() {
  if ! printf '%s' "$2" | cmp -s - "$1"; then
    printf '%s' "$2" > "$1.nb.$$" && mv -f "$1.nb.$$" "$1" && changed=true
  fi
}
put "$R/etc/modules-load.d/nodeboot.conf" "$NB_MODULES"
put "$R/etc/sysctl.d/99-nodeboot.conf" "$NB_SYSCTL"
printf '{"ok":true,"changed":%s}\n' "$changed"
