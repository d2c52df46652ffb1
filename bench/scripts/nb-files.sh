# nodeboot bench phase "node-files": directories and the two config files,
# each written only when it differs. Inputs: NB_ROOT NB_MODULES NB_SYSCTL; lib.sh comes first.
set -eu
R=$NB_ROOT
mkdir -p "$R/etc/kubernetes/manifests" "$R/var/lib/kubelet" "$R/opt/nodeboot" "$R/etc/modules-load.d" "$R/etc/sysctl.d"
changed=false
if nb_put "$R/etc/modules-load.d/nodeboot.conf" "$NB_MODULES"; then changed=true; fi
if nb_put "$R/etc/sysctl.d/99-nodeboot.conf" "$NB_SYSCTL"; then changed=true; fi
printf '{"ok":true,"changed":%s}\n' "$changed"
