# One-shot node preparation (the floor's and OpenSSH's first round trip):
# facts, directories, the two config files when they differ, the join
# stand-in when not done, and whether the artifact must be sent.
# Inputs: NB_ROOT NB_MODULES NB_SYSCTL NB_ARTIFACT_SHA NB_JOIN_FORMAT; lib.sh comes first.
set -eu
R=$NB_ROOT
nb_read_facts
mkdir -p "$R/etc/kubernetes/manifests" "$R/var/lib/kubelet" "$R/opt/nodeboot" "$R/etc/modules-load.d" "$R/etc/sysctl.d"
if nb_put "$R/etc/modules-load.d/nodeboot.conf" "$NB_MODULES"; then echo "changed modules"; fi
if nb_put "$R/etc/sysctl.d/99-nodeboot.conf" "$NB_SYSCTL"; then echo "changed sysctl"; fi
j="$R/etc/kubernetes/kubelet.conf"
# shellcheck disable=SC2059
[ -f "$j" ] || { printf "$NB_JOIN_FORMAT" "$host" "$kernel" "$arch" "$swap" > "$j" && echo "changed join"; }
a="$R/opt/nodeboot/artifact.bin"
if [ -f "$a" ] && [ "$(sha256sum "$a" | cut -d' ' -f1)" = "$NB_ARTIFACT_SHA" ]; then echo artifact=ok; else echo artifact=send; fi
echo "facts kernel=$kernel arch=$arch hostname=$host swap=$swap"
