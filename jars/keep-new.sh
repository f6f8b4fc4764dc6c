#!/usr/bin/env bash
# Drop from DIR every jar whose artifact pyspark already ships in PYSPARK_JARS (whatever the
# version), and RoaringBitmap's old 'shims' companion: Spark keeps its own versions, and two
# versions of one library on a classpath fail in ways that are hard to read.
set -euo pipefail
dir=$1
pyspark_jars=$2
for jar in "$dir"/*.jar; do
  name=$(basename "$jar")
  artifact=$(sed -E 's/-[0-9][^-]*(-[0-9]+)?(\.Final)?\.jar$//' <<<"$name")
  if [ "$artifact" = shims ] || compgen -G "$pyspark_jars/$artifact-[0-9]*.jar" >/dev/null; then
    rm -f "$jar"
  fi
done
