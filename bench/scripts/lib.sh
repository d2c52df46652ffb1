# shellcheck shell=bash disable=SC2034  # sets variables for the script that follows it
# lib.sh: what every bench host script shares (sent ahead of prep.sh for the
# floor and OpenSSH, ahead of nb-*.sh for nodeboot), so the same facts are read
# the same way and files are compared the same way: the tools then differ only
# in how the work reaches the host. Bash builtins where they do the job, since
# on this bench a process started on the host is most of a step's cost.

# nb_read_facts: sets kernel, arch, host and swap (active swap entries).
nb_read_facts() {
  local lines
  read -r kernel arch < <(uname -rm)
  host=$HOSTNAME
  mapfile -t lines < /proc/swaps
  swap=$(( ${#lines[@]} - 1 ))
}

# nb_put FILE CONTENT: write FILE when its content differs; true when written.
nb_put() {
  local current=
  if [[ -f $1 ]]; then IFS= read -r -d '' current < "$1" || true; fi
  [[ -f $1 && $current == "$2" ]] && return 1
  printf '%s' "$2" > "$1.nb.$$" && mv -f "$1.nb.$$" "$1"
}
