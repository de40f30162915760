"""Build of pydecode's compiled kernels.

* ``pydecode._C``: the CPU kernels (csrc/bindings.cpp + csrc/cpu), always built.
* ``pydecode._C_cuda``: the CUDA kernels (csrc/cuda), built with nvcc for sm_80 and sm_90 when
  ``PYDECODE_BUILD_CUDA`` is ``1``, or ``auto`` (the default) and both nvcc and an NVIDIA driver
  are found. A machine with the toolkit but no driver (our CPU development and CI machines) would
  spend ~2.5 of a fresh install's ~4.5 minutes compiling a module it cannot run; CI and developers
  there build it with ``PYDECODE_BUILD_CUDA=1`` (it must compile everywhere, DESIGN.md).

Both modules are torch-free: only pybind11 is needed to build (DESIGN.md). Warnings are errors
(``PYDECODE_WERROR=0`` turns that off for an unfamiliar compiler).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = "csrc"
WERROR = os.environ.get("PYDECODE_WERROR", "1") != "0"
# -ffp-contract=off: no fused multiply-add contraction, so float results are the same as the
# references' (and the same whatever the target ISA). PYDECODE_MARCH (default `native`: the
# module is built on the machine that runs it) picks the vector ISA; `PYDECODE_MARCH=` (empty)
# gives a portable build.
MARCH = os.environ.get("PYDECODE_MARCH", "native")
# PYDECODE_SANITIZE=1: AddressSanitizer + UBSan build of the CPU kernels (see `make asan`).
SANITIZE = os.environ.get("PYDECODE_SANITIZE", "0") == "1"
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
CXX_FLAGS = (
    ["-O1" if SANITIZE else "-O3", "-g" if SANITIZE else "-g0", "-std=c++17", "-ffp-contract=off",
     "-Wall", "-Wextra", "-fvisibility=hidden"]
    + ([f"-march={MARCH}"] if MARCH else [])
    + (["-Werror"] if WERROR else [])
    + (SANITIZER_FLAGS if SANITIZE else [])
)
# pybind11 is a system header for us: its own warnings are not ours to fix.
def pybind11_include() -> str:
    """pybind11's headers: the pybind11 package, else the copy every torch wheel ships.

    The GPU host (../shared/GPU.md) has no network and no pybind11 package, so
    `pip install --no-build-isolation` must build against torch's bundled headers there.
    """
    try:
        import pybind11
    except ImportError:
        spec = importlib.util.find_spec("torch")
        for root in spec.submodule_search_locations if spec and spec.submodule_search_locations else []:
            if (Path(root) / "include" / "pybind11" / "pybind11.h").is_file():
                return str(Path(root) / "include")
        raise SystemExit("building pydecode needs pybind11 (pip install pybind11) or an installed torch") from None
    return pybind11.get_include()


SYSTEM_INCLUDES = ["-isystem", pybind11_include()]
# PYDECODE_CUDA_ARCHS (e.g. "90") narrows the build to the card at hand: the GPU check builds on the
# GPU host inside its time budget, where one architecture halves the compile.
CUDA_ARCHS = os.environ.get("PYDECODE_CUDA_ARCHS", "80 90").replace(",", " ").split()


def find_nvcc() -> str | None:
    for candidate in (
        os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc") if os.environ.get("CUDA_HOME") else None,
        shutil.which("nvcc"),
        "/usr/local/cuda/bin/nvcc",
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def cuda_root(nvcc: str) -> Path:
    """The toolkit folder of an nvcc, following wrapper scripts via `nvcc --version`'s sibling files."""
    out = subprocess.run([nvcc, "-v", "--dryrun", "-c", "-x", "cu", "/dev/null"], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("#$ TOP="):
            return Path(line.split("=", 1)[1].strip())
    return Path(os.path.realpath(nvcc)).parent.parent


def want_cuda() -> str | None:
    mode = os.environ.get("PYDECODE_BUILD_CUDA", "auto").lower()
    if mode not in ("0", "1", "auto"):
        raise SystemExit(f"PYDECODE_BUILD_CUDA must be 0, 1 or auto, got {mode!r}")
    if mode == "0":
        return None
    nvcc = find_nvcc()
    if nvcc is None and mode == "1":
        raise SystemExit("PYDECODE_BUILD_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
    if nvcc is not None and mode == "auto" and not has_nvidia_driver():
        print("pydecode: nvcc found but no NVIDIA driver: skipping the CUDA module "
              "(PYDECODE_BUILD_CUDA=1 builds it anyway)", file=sys.stderr)
        return None
    return nvcc


def has_nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA kernel driver (so the CUDA module could run here)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def build_jobs() -> int:
    """Parallel compile jobs: PYDECODE_BUILD_JOBS, else one per core."""
    return max(1, int(os.environ.get("PYDECODE_BUILD_JOBS") or os.cpu_count() or 1))


def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,  # type: ignore[no-untyped-def]
                      extra_preargs=None, extra_postargs=None, depends=None):
    """CCompiler.compile with one compiler process per source file in parallel.

    setuptools compiles an extension's sources one after another; with a dozen kernel files
    that is most of a build on a 16-core GPU host, whose time is short.
    """
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs
    )
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def compile_one(obj: str) -> None:
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(max_workers=build_jobs()) as pool:
        list(pool.map(compile_one, [obj for obj in objects if obj in build]))
    return objects


class BuildExt(build_ext):
    """build_ext that compiles .cu sources with nvcc and links them with the host objects."""

    def build_extension(self, ext: Extension) -> None:
        self.compiler.compile = types.MethodType(_parallel_compile, self.compiler)
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        # Relink when a kernel or a header changed, not only a host source (setuptools compares
        # the target with sources + depends; the .cu files leave `sources` below).
        ext.depends = [*ext.depends, *cu_sources, *glob(f"{CSRC}/**/*.h", recursive=True),
                       *glob(f"{CSRC}/**/*.cuh", recursive=True)]
        if cu_sources:
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = list(ext.extra_objects or []) + self._nvcc_compile(ext, cu_sources)
        super().build_extension(ext)

    def _nvcc_compile(self, ext: Extension, sources: list[str]) -> list[str]:
        nvcc = ext._nvcc  # type: ignore[attr-defined]
        build_dir = Path(self.build_temp) / "cuda"
        build_dir.mkdir(parents=True, exist_ok=True)
        gencode = []
        for arch in CUDA_ARCHS:
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        # PTX for the newest arch so later GPUs can JIT it.
        gencode += ["-gencode", f"arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}"]

        def compile_one(source: str) -> str:
            obj = build_dir / (Path(source).stem + ".o")
            cmd = [
                nvcc, "-c", source, "-o", str(obj), "-O3", "-std=c++17", "--expt-relaxed-constexpr",
                "-Xcompiler", "-fPIC,-Wall,-Wextra,-fvisibility=hidden",
                *(["-Werror", "all-warnings"] if WERROR else []),
                *gencode,
                *[f"-I{d}" for d in ext.include_dirs],
            ]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            return str(obj)

        # One nvcc per .cu file in parallel: each compiles 3 targets and takes tens of seconds,
        # which would dominate a short GPU-host session if run one after another.
        with ThreadPoolExecutor(max_workers=min(len(sources), build_jobs())) as pool:
            return list(pool.map(compile_one, sources))


def extensions() -> list[Extension]:
    includes = [f"{CSRC}/include", CSRC]
    exts = [
        Extension(
            "pydecode._C",
            sources=[f"{CSRC}/bindings.cpp", *sorted(glob(f"{CSRC}/cpu/*.cpp"))],
            include_dirs=includes,
            extra_compile_args=CXX_FLAGS + SYSTEM_INCLUDES,
            extra_link_args=SANITIZER_FLAGS if SANITIZE else [],
            language="c++",
        )
    ]
    nvcc = want_cuda()
    if nvcc is not None:
        root = cuda_root(nvcc)
        lib_dirs = [str(p) for p in (root / "lib64", root / "targets" / "x86_64-linux" / "lib") if p.exists()]
        ext = Extension(
            "pydecode._C_cuda",
            # bindings.cpp plus each family's <family>_bindings.cpp, and the kernels.
            sources=[*sorted(glob(f"{CSRC}/cuda/*.cpp")), *sorted(glob(f"{CSRC}/cuda/*.cu"))],
            include_dirs=includes,
            library_dirs=lib_dirs,
            # A static runtime: the module loads on machines with only a driver (or none, where
            # device_count() then reports the error instead of failing to import).
            libraries=["cudart_static", "dl", "rt", "pthread"],
            extra_compile_args=CXX_FLAGS + SYSTEM_INCLUDES + ["-isystem", str(root / "include")],
            language="c++",
        )
        ext._nvcc = nvcc  # type: ignore[attr-defined]
        exts.append(ext)
    return exts


setup(
    packages=["pydecode", "pydecode.ops", "pydecode.generation", "pydecode.cli", "pydecode.benchmarks",
              "pydecode.demo_model", "pydecode.triton_kernels"],
    package_dir={"pydecode.triton_kernels": "triton_kernels"},
    # The demo model's weights, config and tokenizer ship with every install (pydecode/demo_model).
    package_data={"pydecode": ["py.typed"], "pydecode.demo_model": ["*.json", "*.safetensors", "README.md"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
)
