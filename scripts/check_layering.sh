#!/usr/bin/env bash
# Fails when a source file includes a header of a folder it must not use. The layers, lowest
# first: kernels <- nn <- data <- stage <- {train, rl} <- cli. A folder may include its own
# headers and those of the layers below it; train/ and rl/ are siblings and never include each
# other; only cli/ (the `idoc` commands) sees everything.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [kernels]="kernels"
  [nn]="kernels nn"
  [data]="kernels nn data"
  [stage]="kernels nn data stage"
  [train]="kernels nn data stage train"
  [rl]="kernels nn data stage rl"
  [cli]="kernels nn data stage train rl cli"
)
bad=0
for dir in "${!allowed[@]}"; do
  [ -d "$dir" ] || continue
  while IFS= read -r -d '' f; do
    while IFS= read -r inc; do
      top="${inc%%/*}"
      [ "$top" = "$inc" ] && continue # a same-folder or system-style name
      [ -n "${allowed[$top]+x}" ] || continue # tests/, third-party names
      case " ${allowed[$dir]} " in
      *" $top "*) ;;
      *)
        echo "layering: $f includes \"$inc\" ($dir/ may use: ${allowed[$dir]})"
        bad=1
        ;;
      esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done < <(find "$dir" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done
[ "$bad" = 0 ] && echo "layering: clean"
exit "$bad"
