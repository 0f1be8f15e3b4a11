#!/bin/sh
# Regenerate shared/proto_gen/ from proto/*.proto (needs grpcio-tools: `pip install -e .[test]`).
#
# protoc names the generated modules after the proto file's path relative to -I, so the gRPC
# module would say `import cluster_pb2`, which only works with shared/proto_gen on sys.path. We
# rewrite that line to an absolute import so the modules work as `shared.proto_gen.cluster_pb2`.
#
# Usage: proto/generate.sh            (from anywhere; PYTHON overrides the interpreter)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
out="$root/shared/proto_gen"
mkdir -p "$out"

cd "$root"
for proto in proto/*.proto; do
    name=$(basename "$proto" .proto)
    "$python" -m grpc_tools.protoc -I proto \
        --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$proto"
    # `import cluster_pb2 as cluster__pb2` -> `from shared.proto_gen import cluster_pb2 as ...`
    sed -i.bak "s/^import ${name}_pb2 as /from shared.proto_gen import ${name}_pb2 as /" \
        "$out/${name}_pb2_grpc.py"
    rm -f "$out/${name}_pb2_grpc.py.bak"
done

if [ ! -f "$out/__init__.py" ]; then
    printf '"""Generated from proto/*.proto by proto/generate.sh; do not edit by hand."""\n' \
        > "$out/__init__.py"
fi
echo "generated: $(cd "$out" && ls ./*.py ./*.pyi | tr '\n' ' ')"
