#!/bin/sh
# check-man.sh - the manual pages say what the programs do.
#
#   check-man.sh TAILORCTL TAILORD SOURCE_ROOT
#
# Fails (exit 1, one line per finding) when
#  - an option `tailorctl --help` gives a command is not in that command's
#    .SY block of tailorctl/tailorctl.1, or the block lists one --help does
#    not give it, or a command or an option that --help mentions anywhere
#    is not in the page;
#  - an option of `tailord --help` is not in daemon/tailord.8;
#  - a key of the config schema (the cfg_row tables of daemon/config_schema.c) is
#    not a ".TP" / ".B key" item of daemon/tailord.yaml.5, or such an item
#    names no key of the schema.
# Options in roff are written with escaped hyphens (\-\-out), and keys of a
# model entry relative to the entry (budget.margin).
set -u

ctl=$1
tailord=$2
src=$3
ctl_page=$src/tailorctl/tailorctl.1
d_page=$src/daemon/tailord.8
yaml_page=$src/daemon/tailord.yaml.5
failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "check-man: $*"
  failed=1
}

for f in "$ctl_page" "$d_page" "$yaml_page"; do
  [ -r "$f" ] || { echo "check-man: $f: cannot read"; exit 1; }
done

# The roff text of a page with \- turned into -, and font escapes dropped.
plain() {
  sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' "$1"
}

# ------------------------------------------------------------ tailorctl

"$ctl" --help >"$tmp/help" 2>&1 || { fail "$ctl --help failed"; cat "$tmp/help"; exit 1; }

# "cmd option" per line, from the usage block of --help (up to its first
# blank line): each "tailorctl CMD" starts a command, continuation lines
# belong to it.
awk '
  /^$/ { exit }
  {
    for (i = 1; i <= NF; i++) {
      if ($i == "tailorctl" && i < NF) { cmd = $(i + 1); print cmd " -"; i++; continue }
      s = $i
      while (match(s, /--[a-z][a-z0-9-]*/)) {
        print cmd " " substr(s, RSTART, RLENGTH)
        s = substr(s, RSTART + RLENGTH)
      }
    }
  }' "$tmp/help" | sort -u >"$tmp/help-opts"

# The same from the page's SYNOPSIS: each .SY block, its command the
# first .B after it.
plain "$ctl_page" | awk '
  /^\.SY/ { in_sy = 1; cmd = ""; next }
  /^\.YS/ { in_sy = 0; next }
  in_sy && cmd == "" && /^\.B[R]? / { cmd = $2; sub(/\|.*/, "", cmd); print cmd " -"; next }
  in_sy {
    s = $0
    while (match(s, /--[a-z][a-z0-9-]*/)) {
      print cmd " " substr(s, RSTART, RLENGTH)
      s = substr(s, RSTART + RLENGTH)
    }
  }' | grep -v '^-h -' | grep -v '^-h --help$' | sort -u >"$tmp/page-opts"

if [ ! -s "$tmp/help-opts" ]; then
  fail "no commands found in tailorctl --help"
fi
comm -23 "$tmp/help-opts" "$tmp/page-opts" | while read -r cmd opt; do
  if [ "$opt" = - ]; then
    echo "check-man: tailorctl.1: no SYNOPSIS entry for command \"$cmd\" of --help"
  else
    echo "check-man: tailorctl.1: SYNOPSIS of \"$cmd\" lacks $opt, which --help gives it"
  fi
done >"$tmp/missing"
comm -13 "$tmp/help-opts" "$tmp/page-opts" | while read -r cmd opt; do
  if [ "$opt" = - ]; then
    echo "check-man: tailorctl.1: SYNOPSIS has command \"$cmd\", which --help does not"
  else
    echo "check-man: tailorctl.1: SYNOPSIS of \"$cmd\" has $opt, which --help does not give it"
  fi
done >>"$tmp/missing"
if [ -s "$tmp/missing" ]; then
  cat "$tmp/missing"
  failed=1
fi

# Every option --help mentions anywhere (--widths, --res-steps, ...) is in
# the page.
plain "$ctl_page" >"$tmp/ctl-plain"
grep -o -- '--[a-z][a-z0-9-]*' "$tmp/help" | sort -u | while read -r opt; do
  grep -q -e "$opt\([^a-z0-9-]\|\$\)" "$tmp/ctl-plain" ||
    echo "check-man: tailorctl.1: $opt of tailorctl --help is not described"
done >"$tmp/missing"
if [ -s "$tmp/missing" ]; then
  cat "$tmp/missing"
  failed=1
fi

# -------------------------------------------------------------- tailord

"$tailord" --help >"$tmp/dhelp" 2>&1 || { fail "$tailord --help failed"; cat "$tmp/dhelp"; exit 1; }
plain "$d_page" >"$tmp/d-plain"
grep -o -e '--[a-z][a-z0-9-]*' -e '^ *-[a-zA-Z],' "$tmp/dhelp" | tr -d ' ,' | sort -u |
  while read -r opt; do
    grep -q -e "$opt\([^a-z0-9-]\|\$\)" "$tmp/d-plain" ||
      echo "check-man: tailord.8: $opt of tailord --help is not described"
  done >"$tmp/missing"
# --help itself is not in the usage text; the page must have it too.
grep -q -e '--help' "$tmp/d-plain" || echo "check-man: tailord.8: --help is not described" >>"$tmp/missing"
if [ -s "$tmp/missing" ]; then
  cat "$tmp/missing"
  failed=1
fi

# ------------------------------------------------------- config schema

# Every key's path from the schema tables: rows of "static const struct
# cfg_row NAME_rows[]" with .key and, for mappings, .sub = &NAME_table;
# the walk starts at top_rows, and keys of a model entry are relative to
# the entry.
awk '
  /static const struct cfg_row [a-z_]+_rows\[\] = \{/ {
    t = $0; sub(/.*cfg_row /, "", t); sub(/_rows.*/, "", t); table = t; n[table] = 0; next
  }
  table != "" && /^\};/ { table = ""; next }
  table != "" {
    s = $0
    if (match(s, /\.key = "[a-z0-9_]+"/)) {
      k = substr(s, RSTART + 8, RLENGTH - 9)
      key[table, ++n[table]] = k
    }
    if (match(s, /\.type = CFG_MODELS/)) models[table, n[table]] = 1
    if (match(s, /\.sub = &[a-z_]+_table/)) {
      sb = substr(s, RSTART + 8, RLENGTH - 8); sub(/_table$/, "", sb)
      sub_of[table, n[table]] = sb
    }
  }
  function walk(t, prefix,    i, p) {
    for (i = 1; i <= n[t]; i++) {
      p = prefix key[t, i]
      print p
      if ((t, i) in sub_of)
        walk(sub_of[t, i], ((t, i) in models) ? "" : p ".")
    }
  }
  END { if (!("top" in n)) { print "NO-TOP-TABLE"; exit 1 } walk("top", "") }
' "$src/daemon/config_schema.c" | sort -u >"$tmp/schema-keys"
if [ ! -s "$tmp/schema-keys" ] || grep -q NO-TOP-TABLE "$tmp/schema-keys"; then
  fail "daemon/config_schema.c: cannot read the schema tables"
fi

# Items of the page: a ".TP" line, then ".B key".
awk '
  prev == ".TP" && /^\.B [a-z_][a-z0-9_.]*$/ { print $2 }
  { prev = $0 }' "$yaml_page" | sort -u >"$tmp/page-keys"

comm -23 "$tmp/schema-keys" "$tmp/page-keys" | while read -r k; do
  echo "check-man: tailord.yaml.5: key \"$k\" of the schema is not documented"
done >"$tmp/missing"
comm -13 "$tmp/schema-keys" "$tmp/page-keys" | while read -r k; do
  echo "check-man: tailord.yaml.5: documents \"$k\", which the schema does not have"
done >>"$tmp/missing"
if [ -s "$tmp/missing" ]; then
  cat "$tmp/missing"
  failed=1
fi

if [ "$failed" = 0 ]; then
  echo "check-man: $(grep -c -v ' -$' "$tmp/help-opts") options of" \
    "$(grep -c ' -$' "$tmp/help-opts") tailorctl commands and" \
    "$(wc -l <"$tmp/schema-keys") config keys: the pages say what the programs do"
fi
exit "$failed"
