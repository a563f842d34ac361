#!/bin/sh
# check-format.sh - every C file of the tree is laid out as .clang-format
# says.
#
#   check-format.sh CLANG_FORMAT SOURCE_ROOT
#
# Fails (exit 1) naming each file that `clang-format` would change, with
# the first lines of the difference; `clang-format -i FILE` fixes one.
set -u

cf=$1
src=$2
failed=0
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
for f in $(cd "$src" && find core daemon predictors tailorctl tests -name '*.[ch]' | sort); do
  if ! "$cf" --style=file "$src/$f" > "$tmp"; then
    echo "check-format: clang-format failed on $f"
    failed=1
    continue
  fi
  if ! cmp -s "$src/$f" "$tmp"; then
    echo "check-format: $f is not formatted (clang-format -i $f):"
    diff -u "$src/$f" "$tmp" | sed -n '3,12p'
    failed=1
  fi
done
exit $failed
