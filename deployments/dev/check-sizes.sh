#!/usr/bin/env bash
# Lists files tracked by git that are larger than a limit (default 5 MiB)
# and exits 1 if there is any: build outputs, binaries and stack state
# belong in .gitignore, not in the repository. `make test` runs it, and
# runs it once first on a planted file to prove that it can fail.
#   check-sizes.sh [repo-dir] [limit-bytes]
set -euo pipefail
dir=${1:-.}
limit=${2:-$((5 * 1024 * 1024))}
cd "$dir"
found=0
while IFS= read -r -d '' f; do
  [[ -f $f ]] || continue
  size=$(stat -c %s -- "$f")
  if (( size > limit )); then
    echo "check-sizes: $f is $size bytes, over the $limit-byte limit for tracked files (git rm --cached it and ignore it)" >&2
    found=1
  fi
done < <(git ls-files -z)
exit "$found"
