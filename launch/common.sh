# Helpers shared by launch/multi_gpu.sh and launch/tpu_pod.sh (sourced).

# Prints the calling script's header comment (its help) and exits.
usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  exit 0
}

# Prints "<script>: error: <message>" to stderr and exits 2.
die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# Prints its arguments as one shell-quoted command line.
shell_join() {
  local out="" arg q="'"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//$q/$q\\$q$q}'"
    fi
  done
  printf '%s\n' "${out# }"
}
