# nodeboot bench phase "facts": one round trip, reads everything later phases
# decide on. Prints one JSON line (nodeboot's script protocol).
R=$NB_ROOT
sum() { if [ -f "$1" ]; then sha256sum "$1" | cut -d' ' -f1; fi; }
dirs=true
for d in etc/kubernetes/manifests var/lib/kubelet opt/nodeboot etc/modules-load.d etc/sysctl.d; do
  [ -d "$R/$d" ] || dirs=false
done
joined=false; [ -f "$R/etc/kubernetes/kubelet.conf" ] && joined=true
printf '{"ok":true,"changed":false,"facts":{"kernel":"%s","arch":"%s","hostname":"%s","swap":"%s","dirs":%s,"modules_sha":"%s","sysctl_sha":"%s","artifact_sha":"%s","joined":%s}}\n' \
  "$(uname -r)" "$(uname -m)" "$(hostname)" "$(awk 'NR>1' /proc/swaps | wc -l)" "$dirs" \
  "$(sum "$R/etc/modules-load.d/nodeboot.conf")" "$(sum "$R/etc/sysctl.d/99-nodeboot.conf")" \
  "$(sum "$R/opt/nodeboot/artifact.bin")" "$joined"
