#!/usr/bin/env bash
# Writes a real English-Spanish parallel corpus from Debian's SWORD Bible modules
# (World English Bible + Reina-Valera 1909), aligned by verse reference:
#   OUT/{train,valid,test}.{en,es}
# Needs packages libsword-utils sword-text-web sword-text-sparv (scripts/install-deps.sh).
set -euo pipefail
out=${1:?usage: get-bible-corpus.sh OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One "reference<TAB>text" line per verse: footnotes and markup removed.
extract() {
  mod2imp "$1" | perl -CSD -ne '
    sub flush {
      return unless defined $key;
      my $t = $text;
      $t =~ s/<note\b.*?<\/note>/ /gs;     # footnotes (a word boundary)
      $t =~ s/<[^>]*>//g;                   # remaining markup (Strong numbers, divs)
      $t =~ s/\s+/ /g; $t =~ s/^ //; $t =~ s/ $//;
      $t =~ s/ ([,.;:!?])/$1/g;             # spaces left before punctuation by removed tags
      print "$key\t$t\n" if $key =~ / \d+:[1-9]\d*$/ && $t ne "";
    }
    if (/^\$\$\$(.*?)\s*$/) { flush(); $key = $1; $text = ""; next }
    $text .= $_;
    END { flush() }'
}
command -v mod2imp >/dev/null || { echo "get-bible-corpus: mod2imp not found (apt-get install libsword-utils)" >&2; exit 1; }
extract engWEB2015eb > "$tmp/en.tsv"
extract spaRV1909eb > "$tmp/es.tsv"
[ -s "$tmp/en.tsv" ] && [ -s "$tmp/es.tsv" ] || { echo "get-bible-corpus: SWORD modules missing (apt-get install sword-text-web sword-text-sparv)" >&2; exit 1; }

# Join on the reference; every 60th verse goes to test, the next one to valid.
awk -F'\t' -v out="$tmp/pairs" '
  NR == FNR { en[$1] = $2; next }
  ($1 in en) { n++; split_ = (n % 60 == 0) ? "test" : (n % 60 == 1) ? "valid" : "train";
               print en[$1] > (out "." split_ ".en"); print $2 > (out "." split_ ".es") }
' "$tmp/en.tsv" "$tmp/es.tsv"
for s in train valid test; do
  for l in en es; do mv "$tmp/pairs.$s.$l" "$out/$s.$l.tmp" && mv "$out/$s.$l.tmp" "$out/$s.$l"; done
done
echo "[corpus] $(wc -l < "$out/train.en") train, $(wc -l < "$out/valid.en") valid, $(wc -l < "$out/test.en") test verse pairs in $out" >&2
