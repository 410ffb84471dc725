#!/usr/bin/env bash
# Regenerates data/tf_example.pb-c.{c,h} from data/tf_example.proto with protoc-c (Debian
# package protobuf-c-compiler). The generated files are committed; the two lines prepended here
# keep them out of builds without protobuf-c and out of clang-format.
set -euo pipefail
cd "$(dirname "$0")/../data"
protoc-c --c_out=. tf_example.proto
for f in tf_example.pb-c.c tf_example.pb-c.h; do
  { printf '// idoc-requires: protobufc\n// clang-format off\n'; cat "$f"; } > "$f.new"
  mv "$f.new" "$f"
done
echo "regenerated data/tf_example.pb-c.{c,h} with $(protoc-c --version | head -1)"
