"""Generates ferry/v1/*_pb2*.py from the repository's proto/ when the package is built.

Two ways, whichever this machine has: grpcio-tools (PyPI; current versions accept proto3
`optional`), or protoc with gRPC's grpc_python_plugin (Debian: protobuf-compiler and
protobuf-compiler-grpc; Debian's python3-grpc-tools 1.14 rejects `optional`, so it is not used).
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.environ.get("FERRY_PROTO_DIR", os.path.join(HERE, "..", "..", "proto"))
OUT = HERE  # the stubs land in ferry/v1/, next to the library


def generate():
    protos = sorted(glob.glob(os.path.join(PROTO_ROOT, "ferry", "v1", "*.proto")))
    if not protos:
        if glob.glob(os.path.join(HERE, "ferry", "v1", "broker_pb2.py")):
            return  # an sdist with the stubs already in it
        sys.exit(f"ferry-client: no .proto files under {PROTO_ROOT} (set FERRY_PROTO_DIR)")
    plugin = shutil.which("grpc_python_plugin")
    try:
        from grpc_tools import protoc  # noqa: F401
        import grpc_tools
        version = tuple(int(x) for x in grpc_tools.__version__.split(".")[:2])
        use_tools = version >= (1, 32)  # older ones reject proto3 `optional`
    except Exception:  # noqa: BLE001 - any import problem means: not usable
        use_tools = False
    if use_tools:
        cmd = [sys.executable, "-m", "grpc_tools.protoc"]
        extra = ["--grpc_python_out=" + OUT]
    elif plugin and shutil.which("protoc"):
        cmd = ["protoc"]
        extra = ["--plugin=protoc-gen-grpc=" + plugin, "--grpc_out=" + OUT]
    else:
        sys.exit("ferry-client: generating the stubs needs grpcio-tools >= 1.32, or protoc and "
                 "grpc_python_plugin (Debian: protobuf-compiler protobuf-compiler-grpc)")
    subprocess.check_call(cmd + ["-I", PROTO_ROOT, "--python_out=" + OUT] + extra + protos)
    init = os.path.join(OUT, "ferry", "v1", "__init__.py")
    if not os.path.exists(init):
        open(init, "w").close()


class BuildPy(build_py):
    def run(self):
        generate()
        super().run()


if __name__ == "__main__":
    generate()  # also for `python3 setup.py` run by hand (tests run from the source tree)
    if len(sys.argv) > 1:
        setup(cmdclass={"build_py": BuildPy})
