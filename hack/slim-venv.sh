#!/bin/sh
# Remove from a built virtualenv what a papertrader worker or operator never loads, so the image stays small.
# Runs in the image's build stage (Dockerfile) and takes the venv path as its only argument.
#   torch: C++ headers, CMake files, C++ test binaries and test libraries, static libraries
#   every package: its own test suites, pip/setuptools/wheel (nothing installs at run time: the root is read-only)
#   torch's own shared libraries: debug symbols (strip --strip-unneeded keeps the dynamic symbols that loading needs;
#   libraries that auditwheel vendored into *.libs folders are left alone: stripping breaks their patched headers)
set -eu
venv=${1:?usage: slim-venv.sh VENV}
site=$(echo "$venv"/lib/python3*/site-packages)
torch=$site/torch

rm -rf "$torch/include" "$torch/share/cmake" "$torch/test"
find "$torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +
rm -f "$torch"/lib/libjitbackend_test.so "$torch"/lib/libtorchbind_test.so \
      "$torch"/lib/libbackend_with_compiler.so "$torch"/lib/libaoti_custom_ops.so
find "$site" -name '*.a' -type f -delete
find "$site" -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
find "$site" -depth -type d -name __pycache__ -exec rm -rf {} +

"$venv/bin/python" -m pip uninstall -q -y pip setuptools wheel

if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$torch"/lib/libtorch*.so "$torch"/lib/libc10.so
else
    echo "slim-venv: strip not found, shared libraries keep their debug symbols" >&2
fi
