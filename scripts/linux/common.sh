# common.sh: the result protocol and host lock shared by nodeboot's Linux scripts.
# nodeboot (and the Ansible roles) feed this file, then the script, to
# `bash --noprofile --norc -s` on stdin. Inputs arrive as NB_* variables.
#
# Protocol: human text goes to stderr; the script ends by printing exactly one
# JSON line on stdout: {"ok":bool,"changed":bool,"facts":{...},"error":"..."}.
# Commands that might read stdin get </dev/null: bash is still reading the
# script from stdin, and a child that read it would eat the rest.

set -uo pipefail
exec 3>&1 1>&2

# This script's own process. Under nodeboot's framed shell a script runs in a subshell of
# the loop, where $$ is the loop's; run by `bash -s` (the Ansible roles) the two are the same.
NB_PID=$BASHPID
NB_RESULT_SENT=0
NB_CHANGED=false
NB_LOCKED=0
NB_LOCK_DIR=${NB_LOCK_DIR:-/run/nodeboot.lock}
declare -a NB_FACT_KEYS=()
declare -A NB_FACTS=()
declare -a NB_ACTIONS=()

# nb_json_into VAR TEXT: TEXT as a JSON string, into VAR. No subshell: a facts script
# encodes dozens of values, and each $(...) is a fork on the host.
nb_json_into() {
    local _nb_s=$2
    # Most values need no escaping: one pattern test instead of six substitutions.
    if [[ $_nb_s != *[\\\"[:cntrl:]]* ]]; then printf -v "$1" '"%s"' "$_nb_s"; return; fi
    _nb_s=${_nb_s//\\/\\\\}
    _nb_s=${_nb_s//\"/\\\"}
    _nb_s=${_nb_s//$'\n'/\\n}
    _nb_s=${_nb_s//$'\t'/\\t}
    _nb_s=${_nb_s//$'\r'/}
    _nb_s=${_nb_s//[$'\001'-$'\037']/}
    printf -v "$1" '"%s"' "$_nb_s"
}

# nb_json_list_into VAR ITEM...: the items as a JSON list of strings, into VAR (no subshell).
nb_json_list_into() {
    local _nb_var=$1 _nb_out="" _nb_item _nb_encoded
    shift
    for _nb_item in "$@"; do nb_json_into _nb_encoded "$_nb_item"; _nb_out+="${_nb_out:+,}$_nb_encoded"; done
    printf -v "$_nb_var" '[%s]' "$_nb_out"
}

# nb_fact KEY RAW_JSON / nb_fact_str KEY TEXT / nb_fact_bool KEY 1|0 / nb_fact_list KEY
# ITEM... / nb_fact_if KEY COMMAND... (true when COMMAND succeeds; a builtin such as test runs
# without a fork): facts keep their insertion order.
nb_fact() {
    [[ -v "NB_FACTS[$1]" ]] || NB_FACT_KEYS+=("$1")
    NB_FACTS[$1]=$2
}
nb_fact_str() {
    local encoded
    nb_json_into encoded "$2"
    nb_fact "$1" "$encoded"
}
nb_fact_bool() { if [[ $2 == 1 || $2 == true ]]; then nb_fact "$1" true; else nb_fact "$1" false; fi; }
nb_fact_list() {
    local key=$1 list
    shift
    nb_json_list_into list "$@"
    nb_fact "$key" "$list"
}
nb_fact_if() {
    local key=$1
    shift
    if "$@"; then nb_fact "$key" true; else nb_fact "$key" false; fi
}

# nb_changed "what": record a change (in a dry run, a change that would be made;
# NB_SAY_PREFIX then says so in the human line).
nb_changed() {
    NB_CHANGED=true
    NB_ACTIONS+=("$1")
    echo "${NB_SCRIPT:-nodeboot}: ${NB_SAY_PREFIX:-}$1"
}

nb_emit() {
    local ok=$1 error=$2 body="" key
    local encoded
    for key in "${NB_FACT_KEYS[@]}"; do nb_json_into encoded "$key"; body+="${body:+,}$encoded:${NB_FACTS[$key]}"; done
    nb_json_list_into encoded "${NB_ACTIONS[@]}"
    body+="${body:+,}\"actions\":$encoded"
    nb_json_into encoded "$error"
    printf '{"ok":%s,"changed":%s,"facts":{%s},"error":%s}\n' "$ok" "$NB_CHANGED" "$body" "$encoded" >&3
    NB_RESULT_SENT=1
}

nb_die() {
    echo "${NB_SCRIPT:-nodeboot}: error: $1"
    [[ $BASHPID == "$NB_PID" ]] || exit 1
    nb_emit false "$1"
    exit 1
}

nb_ok() { nb_emit true ""; exit 0; }

nb_on_exit() {
    local status=$?
    [[ $NB_LOCKED == 1 ]] && rm -rf "$NB_LOCK_DIR"
    [[ $NB_RESULT_SENT == 1 ]] || nb_emit false "${NB_SCRIPT:-script} stopped unexpectedly (exit $status)"
}
trap nb_on_exit EXIT

# nb_lock: one nodeboot run changes a host at a time. The lock is a directory
# (mkdir is atomic) naming its run and the shell holding it. It is stale when
# that shell is gone (a run cut off mid-way) or after NB_LOCK_STALE seconds, so
# a crashed run never blocks the host for ever.
nb_lock() {
    local run=${NB_RUN_ID:-unknown} stale=${NB_LOCK_STALE:-900} owner since pid age
    if mkdir "$NB_LOCK_DIR" 2>/dev/null; then
        echo "$run $(date +%s) $NB_PID" > "$NB_LOCK_DIR/owner"
        NB_LOCKED=1
        return 0
    fi
    read -r owner since pid < "$NB_LOCK_DIR/owner" 2>/dev/null || { owner=unknown; since=0; pid=""; }
    [[ $owner == "$run" ]] && return 0
    age=$(( $(date +%s) - ${since:-0} ))
    if (( age > stale )) || [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        echo "nodeboot: taking over the lock of run $owner (${age}s old, holder gone or stale)"
        echo "$run $(date +%s) $NB_PID" > "$NB_LOCK_DIR/owner"
        NB_LOCKED=1
        return 0
    fi
    nb_die "host is locked by another nodeboot run ($owner, ${age}s ago, pid $pid); it goes stale after ${stale}s"
}

# Kernel modules, read once into tables. lsmod's output is read whole: `lsmod |
# grep -q` under pipefail can fail on SIGPIPE. A module built into the kernel
# never shows in lsmod: modules.builtin lists those.
declare -A NB_LOADED=()
declare -A NB_BUILTIN=()

nb_read_modules() {
    local out name _rest line path
    out=$(lsmod) || nb_die "lsmod failed"
    NB_LOADED=()
    while read -r name _rest; do
        if [[ -n $name && $name != Module ]]; then NB_LOADED[$name]=1; fi
    done <<<"$out"
    NB_BUILTIN=()
    path="/lib/modules/$(uname -r)/modules.builtin"
    [[ -r $path ]] || return 0
    while read -r line; do
        name=${line##*/}
        name=${name%%.ko*}
        NB_BUILTIN[${name//-/_}]=1
    done <"$path"
}

nb_module_loaded() {
    local name=${1//-/_}
    [[ -v "NB_LOADED[$name]" || -v "NB_BUILTIN[$name]" ]]
}

nb_flag() {
    case $2 in 0 | 1) ;; *) nb_die "$1 must be 0 or 1, got '$2'" ;; esac
}
