#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries a binary links,
# one per line, sorted: what the runtime stage of the Dockerfile installs.
# Fails when a library is not found or belongs to no package.
# Usage: runtime-packages.sh BINARY
set -euo pipefail
binary="${1:?usage: runtime-packages.sh BINARY}"

# The dpkg package owning a file: tries the path ldd gave, then its real path,
# each also with /usr added or removed (Debian 12 is /usr-merged, but dpkg
# records each file under the directory its package ships it in).
owner() {
  local path real candidate out
  path="$1"
  real="$(realpath "$path")"
  for candidate in "$path" "$real" "/usr$path" "/usr$real" "${path#/usr}" "${real#/usr}"; do
    if out="$(dpkg-query -S "$candidate" 2>/dev/null | grep -v '^diversion' | head -n 1)" \
       && [[ -n "$out" ]]; then
      printf '%s\n' "${out%%:*}"
      return 0
    fi
  done
  echo "runtime-packages: no package owns $path" >&2
  return 1
}

libs="$(ldd "$binary")"
if grep -q 'not found' <<<"$libs"; then
  echo "runtime-packages: $binary has unresolved libraries:" >&2
  grep 'not found' <<<"$libs" >&2
  exit 1
fi

packages=()
while read -r lib; do
  packages+=("$(owner "$lib")")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$libs")
printf '%s\n' "${packages[@]}" | sort -u
