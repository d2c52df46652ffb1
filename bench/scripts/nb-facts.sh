# nodeboot bench phase "facts": one round trip, reads everything later phases
# decide on: the facts, and the sha256 of the files the workload writes (one
# sha256sum for all of them). Prints one JSON line (nodeboot's script
# protocol). Inputs: NB_ROOT; lib.sh comes first.
R=$NB_ROOT
nb_read_facts
declare -A sha=()
present=()
for f in "$R/etc/modules-load.d/nodeboot.conf" "$R/etc/sysctl.d/99-nodeboot.conf" "$R/opt/nodeboot/artifact.bin"; do
  [ -f "$f" ] && present+=("$f")
done
if (( ${#present[@]} )); then
  while read -r sum path; do sha[$path]=$sum; done < <(sha256sum "${present[@]}")
fi
dirs=true
for d in etc/kubernetes/manifests var/lib/kubelet opt/nodeboot etc/modules-load.d etc/sysctl.d; do
  [ -d "$R/$d" ] || dirs=false
done
joined=false; [ -f "$R/etc/kubernetes/kubelet.conf" ] && joined=true
printf '{"ok":true,"changed":false,"facts":{"kernel":"%s","arch":"%s","hostname":"%s","swap":"%s","dirs":%s,"modules_sha":"%s","sysctl_sha":"%s","artifact_sha":"%s","joined":%s}}\n' \
  "$kernel" "$arch" "$host" "$swap" "$dirs" \
  "${sha[$R/etc/modules-load.d/nodeboot.conf]:-}" "${sha[$R/etc/sysctl.d/99-nodeboot.conf]:-}" \
  "${sha[$R/opt/nodeboot/artifact.bin]:-}" "$joined"
