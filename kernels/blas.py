"""NumPy's own BLAS matrix multiply (sgemm), callable from inside Numba kernels.

Why: a prompt's matrix products go to BLAS, run single-threaded and split into bands of output
columns spread over the engine's threads (kernels/linear.py). Running those bands on Numba's own
worker threads, inside a `prange` loop, leaves the process with ONE pool of worker threads. Numba's OpenMP workers
busy-wait for a while after each parallel kernel (`GOMP_SPINCOUNT`): that keeps the 49 parallel
kernels of a decode step quick, but with a second pool (Python threads running BLAS) the spinning
workers took the cores the BLAS bands needed. With one pool there is nothing to take them from.

How: NumPy's wheels bundle OpenBLAS built with 64-bit integers and a symbol suffix
(`scipy_cblas_sgemm64_` in NumPy 2.x, `cblas_sgemm64_` in 1.26). We find that library among the
loaded ones (threadpoolctl), look the symbol up, and register its address with LLVM under one fixed
name, `gpt2_engine_cblas_sgemm_ilp64`, which the kernels declare as an external function. Numba's
on-disk cache then holds code that calls that name, whatever the real symbol is called, and it is
resolved again in each process. Only 64-bit-integer (ILP64) CBLAS is used: a symbol without the
`64` suffix takes 32-bit integers, and a call with the wrong width would read garbage sizes. If no
ILP64 sgemm is found (NumPy built on another BLAS), `SGEMM_AVAILABLE` is False and the engine falls
back to NumPy's matmul on a small Python thread pool (kernels/linear.py).
"""

import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import types
from threadpoolctl import threadpool_info

SYMBOL = "gpt2_engine_cblas_sgemm_ilp64"  # the name the kernels call; bound to the real sgemm below
# OpenBLAS names its ILP64 builds' symbols with a "64_" suffix (and NumPy 2's with a "scipy_" prefix).
ILP64_NAMES = ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "cblas_sgemm_64")
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values

_i64 = types.int64
# cblas_sgemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); pointers as void*
cblas_sgemm = types.ExternalFunction(
    SYMBOL,
    types.void(
        _i64,
        _i64,
        _i64,
        _i64,
        _i64,
        _i64,
        types.float32,
        types.voidptr,
        _i64,
        types.voidptr,
        _i64,
        types.float32,
        types.voidptr,
        _i64,
    ),
)


def _numpy_blas_libraries() -> list[str]:
    """Paths of the loaded BLAS libraries, NumPy's own first (the one its matmul uses)."""
    numpy_dir = np.__file__.rsplit("/", 2)[0]  # site-packages: holds numpy/ and numpy.libs/
    paths = [p["filepath"] for p in threadpool_info() if p["user_api"] == "blas"]
    return sorted(paths, key=lambda path: not path.startswith(numpy_dir))


def _find_ilp64_sgemm() -> int | None:
    """Address of an ILP64 cblas_sgemm in a loaded BLAS, or None."""
    for path in _numpy_blas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ILP64_NAMES:
            function = getattr(library, name, None)
            if function is not None:
                return ctypes.cast(function, ctypes.c_void_p).value
    return None


_address = _find_ilp64_sgemm()
SGEMM_AVAILABLE = _address is not None
if SGEMM_AVAILABLE:
    llvm.add_symbol(SYMBOL, _address)
