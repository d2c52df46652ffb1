#!/bin/bash
# OpenSSH, one host: a ControlMaster connection, the one-shot prep.sh, then
# upload.sh with the artifact only when its sha256 differs; the master is
# closed at the end. Run by xargs -P N, one line of the host list per call.
# usage: openssh_host.sh NAME ADDRESS PORT ROOT   (env: NB_KEY NB_KNOWN_HOSTS NB_CP_DIR NB_VARS NB_ARTIFACT)
set -u
name=$1 addr=$2 port=$3 root=$4
here=$(cd "$(dirname "$0")/.." && pwd)
opts=(-i "$NB_KEY" -p "$port" -o "UserKnownHostsFile=$NB_KNOWN_HOSTS" -o StrictHostKeyChecking=yes
      -o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=auto -o "ControlPath=$NB_CP_DIR/%C"
      -o ControlPersist=30 -o KexAlgorithms=curve25519-sha256@libssh.org -o Ciphers=aes128-gcm@openssh.com
      -o HostKeyAlgorithms=ssh-ed25519)
remote() { ssh "${opts[@]}" "root@$addr" 'bash --noprofile --norc -s'; }
if ! out=$({ printf 'export NB_ROOT=%q\n' "$root"; cat "$NB_VARS" "$here/scripts/lib.sh" "$here/scripts/prep.sh"; } | remote 2>&1); then
  echo "$name FAILED prep: ${out: -200}"; exit 1
fi
if [[ $out == *artifact=send* ]]; then
  if ! up=$({ printf 'export NB_ROOT=%q\n' "$root"; cat "$NB_VARS" "$here/scripts/upload.sh" "$NB_ARTIFACT"; } | remote 2>&1) \
     || [[ $up != written ]]; then
    echo "$name FAILED upload: ${up: -200}"; ssh "${opts[@]}" -O exit "root@$addr" 2>/dev/null; exit 1
  fi
fi
ssh "${opts[@]}" -O exit "root@$addr" 2>/dev/null
if [[ $out == *changed* || $out == *artifact=send* ]]; then echo "$name changed"; else echo "$name ok"; fi
