#!/bin/sh
# verify-jars.sh SUMS DIR: the jars under DIR are exactly those SUMS lists (paths relative to
# DIR), byte for byte (sha256). The image build runs it on the jars Ivy fetched from Maven
# Central: a jar that changed on the way, a missing one, or one nobody pinned fails the build.
# SUMS was made from jars whose SHA-1 matched Maven Central's published .sha1 files; when the
# locked delta-spark or pyspark changes, regenerate it the same way (docs/deployment.md).
set -eu
sums=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$2"
sha256sum --check --strict --quiet "$sums"
listed=$(awk '!/^#/ {print $2}' "$sums" | sort)
found=$(for folder in $(printf '%s\n' "$listed" | xargs -n1 dirname | sort -u); do
  find "$folder" -maxdepth 1 -name '*.jar'
done | sort)
if [ "$listed" != "$found" ]; then
  echo "jars without a pinned checksum in $sums:" >&2
  printf '%s\n' "$found" | grep -vxF -e "$listed" >&2 || true
  exit 1
fi
echo "verified $(printf '%s\n' "$listed" | wc -l) jars against $sums"
