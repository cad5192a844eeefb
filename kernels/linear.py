"""Matrix products of a few rows against a large weight matrix: decoding's whole cost.

Legend: N = rows of activations (batch x tokens), K = input features, M = output features.

Decoding one token per row multiplies N = 1..8 rows by each weight matrix: every weight is read
once from memory and used N times, so the speed is the memory's, and the job is to stream the
weights at full bandwidth. A general matrix multiply (BLAS sgemm) is built for the other case,
many rows, where it repacks the weights into blocks first; for a handful of rows that repacking is
extra traffic. These kernels read each weight once, in the order it is stored:

- `linear`: x [N, K] @ weight [K, M] + bias [M], the layout of GPT-2's Conv1D weights. Each thread
  takes a contiguous band of weight rows (one long sequential read, what hardware prefetchers
  stream best) and accumulates x[:, k] * weight[k, :] into its own [N, M] partial sums, which are
  added at the end.
- `matmul_transposed`: x [N, C] @ table [V, C]^T, the tied output layer (logits from the token
  embedding matrix, read as stored: no transposed copy). Each thread takes a contiguous band of
  rows of the table; each output is the dot product of an x row and a table row.

With more rows than `FEW_ROWS` (a prompt) both hand over to BLAS's sgemm, the right tool there.
The engine keeps BLAS itself single-threaded (engine/base/threads.py) and splits such a product into
bands of output columns, calling sgemm once per band from inside a Numba `prange` loop
(kernels/blas.py): the bands run on the same OpenMP worker threads as every other kernel, so the
process has a single pool of workers (two pools that busy-wait for work fight over the same cores
between calls). The bands are fixed by the matrix, not by the threads, so a prompt's logits are the
same on any number of threads. Where NumPy's BLAS offers no 64-bit-integer CBLAS sgemm to call, the
bands fall back to NumPy's matmul on a small Python thread pool (NumPy releases the GIL inside BLAS).

`linear_reference` / `matmul_transposed_reference` state the results in NumPy. All float32.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

from . import settings
from .blas import NO_TRANS, ROW_MAJOR, SGEMM_AVAILABLE, TRANS, cblas_sgemm
from .formats import Q8_BLOCK, BFloat16Matrix, Q8Matrix, Weight, dequantize
from .settings import DOT_PRODUCTS, FMA_ONLY
from .widen import is_float32, is_q8, weight_at


def linear_reference(x: np.ndarray, weight: Weight, bias: np.ndarray) -> np.ndarray:
    """x: float32 [N, K]; weight [K, M] in any format (kernels/formats.py); bias: float32 [M]
    -> float32 [N, M]: the weight dequantized to float32, then multiplied."""
    return x @ dequantize(weight) + bias


def matmul_transposed_reference(x: np.ndarray, table: Weight) -> np.ndarray:
    """x: float32 [N, C]; table [V, C] in any format -> x @ table.T, float32 [N, V]."""
    return x @ dequantize(table).T


COLUMN_ALIGN = 16  # float32 per 64-byte cache line: a thread's band of columns starts on a line
ROW_TILE_COLUMNS = 512  # with several rows, columns are taken this many at a time (accumulators stay in L1)
TABLE_ROW_GROUP = 4  # output-layer rows taken together (each load of an x row serves four dot products)


@njit(inline="always")
def band_edge(p, parts, size, align):
    """Start of band p of `parts` over [0, size): evenly split, rounded down to a multiple of `align`."""
    if p >= parts:
        return size
    return (p * size // parts) // align * align


@njit(inline="always", fastmath=FMA_ONLY)
def _linear_columns(x, weight, scales, bias, out, j_begin, j_end):
    """out[:, j] = bias[j] + sum over k, in order, of x[:, k] * weight[k, j], for j in [j_begin, j_end).

    weight [K, M] in a float kernel format, each element widened by `weight_at` (kernels/widen.py);
    Q8 weights go to `_q8_columns`, with their scales [ceil(K/32), M] (for other formats an array
    of width 0, never read).

    Each output is one running sum, bias first, then one fused multiply-add per k in increasing
    k: the same operations in the same order whatever the number of rows, the band of columns or
    the thread (`FMA_ONLY`: no reordering). The loops only choose what is in cache: with one row
    the weight rows stream through (a pure sequential read), with several the columns are taken a
    tile at a time so that the rows' accumulators stay in L1 while each weight row is read once for
    all of them; four weight rows per pass over the accumulators (a quarter of their loads and
    stores).
    """
    if is_q8(weight):
        _q8_columns(x, weight, scales, bias, out, j_begin, j_end)
        return
    N, K = x.shape
    tile = j_end - j_begin if N == 1 else ROW_TILE_COLUMNS
    for t_begin in range(j_begin, j_end, max(tile, 1)):
        t_end = min(t_begin + tile, j_end)
        _start_from_bias(bias, out, t_begin, t_end)
        k = 0
        while k + 4 <= K:
            w0, w1 = weight[k, t_begin:t_end], weight[k + 1, t_begin:t_end]
            w2, w3 = weight[k + 2, t_begin:t_end], weight[k + 3, t_begin:t_end]
            _add_four_rows(x, out, k, t_begin, t_end, w0, w1, w2, w3)
            k += 4
        while k < K:
            _add_one_row(x, out, k, weight[k, t_begin:t_end], t_begin)
            k += 1


@njit(inline="always")
def _start_from_bias(bias, out, t_begin, t_end):
    """out[n, t_begin:t_end] = bias[t_begin:t_end] for every row n."""
    # 1-D views of the tile, looped from 0: LLVM vectorises these loops (with 2-D indexing at a
    # run-time column offset it kept them scalar)
    b = bias[t_begin:t_end]
    for n in range(out.shape[0]):
        o = out[n, t_begin:t_end]
        for j in range(t_end - t_begin):
            o[j] = b[j]


@njit(inline="always", fastmath=FMA_ONLY)
def _q8_columns(x, quants, scales, bias, out, j_begin, j_end):
    """`_linear_columns` for Q8 weights, a block at a time: out[:, j] = bias[j] + the sum over the
    blocks b, in order, of scales[b, j] * (the sum over the block's k, in order, of x[:, k] *
    quants[k, j]).

    A block's sums take the bare quants (float32(quant), exact), so each weight costs a conversion
    and a multiply-add, and the scale one multiply-add per block of 32: a quarter less arithmetic
    than scaling every weight (decode with int8 weights is bound by that arithmetic, not by
    memory; docs/speed.md). With one row, eight quant rows per pass (measured faster than four);
    with several, four, tiled as `_linear_columns`. Either way an output's operations are the same
    in the same order: part = 0, one fused multiply-add per k of the block, then out += part *
    scale; so a row's result does not depend on its batch, band or thread.
    """
    N, K = x.shape
    tile = j_end - j_begin if N == 1 else ROW_TILE_COLUMNS
    part = np.empty((N, max(min(tile, j_end - j_begin), 1)), dtype=np.float32)  # one block's sums
    for t_begin in range(j_begin, j_end, max(tile, 1)):
        t_end = min(t_begin + tile, j_end)
        width = t_end - t_begin
        _start_from_bias(bias, out, t_begin, t_end)
        for k_begin in range(0, K, Q8_BLOCK):
            k_end = min(k_begin + Q8_BLOCK, K)
            for n in range(N):
                p = part[n, :width]
                for j in range(width):
                    p[j] = np.float32(0.0)
            k = k_begin
            while N == 1 and k + 8 <= k_end:
                _add_eight_quant_rows(x[0], part[0, :width], k, quants, t_begin, t_end)
                k += 8
            while k + 4 <= k_end:
                w0, w1 = quants[k, t_begin:t_end], quants[k + 1, t_begin:t_end]
                w2, w3 = quants[k + 2, t_begin:t_end], quants[k + 3, t_begin:t_end]
                _add_four_rows(x, part, k, 0, width, w0, w1, w2, w3)
                k += 4
            while k < k_end:
                _add_one_row(x, part, k, quants[k, t_begin:t_end], 0)
                k += 1
            s = scales[k_begin // Q8_BLOCK, t_begin:t_end]
            for n in range(N):
                o, p = out[n, t_begin:t_end], part[n, :width]
                for j in range(width):
                    o[j] += p[j] * s[j]


@njit(inline="always", fastmath=FMA_ONLY)
def _add_eight_quant_rows(xn, p, k, quants, t_begin, t_end):
    """p[j] += xn[k + i] * float32(quants[k + i, t_begin + j]), for i = 0..7 in order: one row's
    block sums, eight quant rows per load and store of the sums."""
    w0, w1 = quants[k, t_begin:t_end], quants[k + 1, t_begin:t_end]
    w2, w3 = quants[k + 2, t_begin:t_end], quants[k + 3, t_begin:t_end]
    w4, w5 = quants[k + 4, t_begin:t_end], quants[k + 5, t_begin:t_end]
    w6, w7 = quants[k + 6, t_begin:t_end], quants[k + 7, t_begin:t_end]
    x0, x1, x2, x3 = xn[k], xn[k + 1], xn[k + 2], xn[k + 3]
    x4, x5, x6, x7 = xn[k + 4], xn[k + 5], xn[k + 6], xn[k + 7]
    for j in range(t_end - t_begin):
        a = p[j]
        a += x0 * np.float32(w0[j])
        a += x1 * np.float32(w1[j])
        a += x2 * np.float32(w2[j])
        a += x3 * np.float32(w3[j])
        a += x4 * np.float32(w4[j])
        a += x5 * np.float32(w5[j])
        a += x6 * np.float32(w6[j])
        a += x7 * np.float32(w7[j])
        p[j] = a


@njit(inline="always", fastmath=FMA_ONLY)
def _add_one_row(x, out, k, w, column):
    """out[n, column + j] += x[n, k] * w[j] for every row n (w: one weight row, any float format, or
    bare Q8 quants)."""
    for n in range(x.shape[0]):
        o = out[n, column : column + w.shape[0]]
        xk = x[n, k]
        for j in range(w.shape[0]):
            o[j] += xk * weight_at(w, None, j)


@njit(inline="always", fastmath=FMA_ONLY)
def _add_four_rows(x, out, k, t_begin, t_end, w0, w1, w2, w3):
    """out[n, t_begin:t_end] += x[n, k + i] * row i, for i = 0..3 in order, for every row n (rows
    in any float format, or bare Q8 quants).

    Rows n go four at a time through one loop over the columns: each widened weight, in a
    register, serves four rows' multiply-adds, and each accumulator is loaded and stored once per
    four weights (batch 8 was bound by those loads and stores). An output's operations are the
    same whichever group its row falls in.
    """
    N = x.shape[0]
    width = t_end - t_begin
    n = 0
    while n + 4 <= N:
        o0, o1, o2, o3 = (
            out[n, t_begin:t_end],
            out[n + 1, t_begin:t_end],
            out[n + 2, t_begin:t_end],
            out[n + 3, t_begin:t_end],
        )
        x00, x01, x02, x03 = x[n, k], x[n, k + 1], x[n, k + 2], x[n, k + 3]
        x10, x11, x12, x13 = x[n + 1, k], x[n + 1, k + 1], x[n + 1, k + 2], x[n + 1, k + 3]
        x20, x21, x22, x23 = x[n + 2, k], x[n + 2, k + 1], x[n + 2, k + 2], x[n + 2, k + 3]
        x30, x31, x32, x33 = x[n + 3, k], x[n + 3, k + 1], x[n + 3, k + 2], x[n + 3, k + 3]
        for j in range(width):
            v0, v1, v2, v3 = (
                weight_at(w0, None, j),
                weight_at(w1, None, j),
                weight_at(w2, None, j),
                weight_at(w3, None, j),
            )
            a = o0[j]
            a += x00 * v0
            a += x01 * v1
            a += x02 * v2
            a += x03 * v3
            o0[j] = a
            a = o1[j]
            a += x10 * v0
            a += x11 * v1
            a += x12 * v2
            a += x13 * v3
            o1[j] = a
            a = o2[j]
            a += x20 * v0
            a += x21 * v1
            a += x22 * v2
            a += x23 * v3
            o2[j] = a
            a = o3[j]
            a += x30 * v0
            a += x31 * v1
            a += x32 * v2
            a += x33 * v3
            o3[j] = a
        n += 4
    while n < N:
        o = out[n, t_begin:t_end]
        x0, x1, x2, x3 = x[n, k], x[n, k + 1], x[n, k + 2], x[n, k + 3]
        for j in range(width):
            a = o[j]
            a += x0 * weight_at(w0, None, j)
            a += x1 * weight_at(w1, None, j)
            a += x2 * weight_at(w2, None, j)
            a += x3 * weight_at(w3, None, j)
            o[j] = a
        n += 1


@njit(parallel=True, fastmath=FMA_ONLY, cache=True)
def _linear_few_rows(x, weight, scales, bias, out, parts):  # x [N, K], weight [K, M], bias [M], out [N, M]
    M = weight.shape[1]
    for p in prange(parts):  # thread p: a band of whole columns (outputs), never a share of K
        _linear_columns(
            x, weight, scales, bias, out, band_edge(p, parts, M, COLUMN_ALIGN), band_edge(p + 1, parts, M, COLUMN_ALIGN)
        )


@njit(fastmath=FMA_ONLY, cache=True)
def _linear_few_rows_serial(x, weight, scales, bias, out):
    _linear_columns(x, weight, scales, bias, out, 0, weight.shape[1])


# not inlined: one machine code for both twins (batch invariance, kernels/settings.py)
@njit(fastmath=DOT_PRODUCTS, cache=True)
def _dot_table_rows(x, table, v_begin, v_end, out):
    """out[n, v] = x[n] . table[v] for every row n and v in [v_begin, v_end).

    table [V, C]: float32, or a 16-bit format widened by `weight_at` (a Q8 table is stored
    transposed and goes through `_linear_columns` instead). The table rows go in groups of
    TABLE_ROW_GROUP counted from row 0 of the table (a band starts on a group), and each (row n,
    group) is one loop over C with four running dot products, so the loop that computes out[n, v]
    is the same whatever the number of rows or the band: results do not depend on the batch or the
    threads. The last V % 4 table rows take a one-row loop.
    """
    N, C = x.shape
    none = np.empty(0, dtype=np.float32)  # no scales: weight_at reads them for int8 only
    widened = np.empty((TABLE_ROW_GROUP, C), dtype=np.float32)  # a 16-bit group, widened once
    v = v_begin
    while v + TABLE_ROW_GROUP <= v_end:
        t0, t1, t2, t3 = table[v], table[v + 1], table[v + 2], table[v + 3]
        if is_float32(table):
            _dot_group(x, t0, t1, t2, t3, none, out, v)
        else:  # every batch size alike (the same loops for a row alone or in a batch)
            r0, r1, r2, r3 = widened[0], widened[1], widened[2], widened[3]
            for c in range(C):
                r0[c] = weight_at(t0, none, c)
                r1[c] = weight_at(t1, none, c)
                r2[c] = weight_at(t2, none, c)
                r3[c] = weight_at(t3, none, c)
            _dot_group(x, r0, r1, r2, r3, none, out, v)
        v += TABLE_ROW_GROUP
    while v < v_end:
        t0 = table[v]
        for n in range(N):
            xn = x[n]
            dot = np.float32(0.0)
            for c in range(C):
                dot += xn[c] * weight_at(t0, none, c)
            out[n, v] = dot
        v += 1


@njit(inline="always", fastmath=DOT_PRODUCTS)
def _dot_group(x, t0, t1, t2, t3, none, out, v):
    """out[n, v + i] = x[n] . row i, for the four rows of a group and every row n."""
    for n in range(x.shape[0]):
        xn = x[n]
        dot0 = dot1 = dot2 = dot3 = np.float32(0.0)
        for c in range(x.shape[1]):
            xc = xn[c]
            dot0 += xc * weight_at(t0, none, c)
            dot1 += xc * weight_at(t1, none, c)
            dot2 += xc * weight_at(t2, none, c)
            dot3 += xc * weight_at(t3, none, c)
        out[n, v], out[n, v + 1], out[n, v + 2], out[n, v + 3] = dot0, dot1, dot2, dot3


@njit(parallel=True, fastmath=DOT_PRODUCTS, cache=True)
def _matmul_transposed_few_rows(x, table, out, parts):  # x [N, C], table [V, C], out [N, V]
    V = table.shape[0]
    for p in prange(parts):  # thread p: a band of table rows (outputs), groups kept whole
        _dot_table_rows(
            x, table, band_edge(p, parts, V, TABLE_ROW_GROUP), band_edge(p + 1, parts, V, TABLE_ROW_GROUP), out
        )


@njit(fastmath=DOT_PRODUCTS, cache=True)
def _matmul_transposed_few_rows_serial(x, table, out):
    V = table.shape[0]  # the bounds as int64 (a literal 0 would compile a second _dot_table_rows)
    _dot_table_rows(x, table, band_edge(0, 1, V, TABLE_ROW_GROUP), band_edge(1, 1, V, TABLE_ROW_GROUP), out)


def _threads_for(weights: np.ndarray) -> int:
    """Every thread for a decode step's products (one thread alone streams well below the bandwidth
    all cores reach); one for matrices below settings.PARALLEL_MIN_WEIGHTS, where the barrier at the
    end of a parallel region costs more than the other threads gain (tiny models). The choice
    depends on the matrix only, never on the rows; and since every output is computed by the same
    operations on any thread, it does not change any result either."""
    return numba.get_num_threads() if weights.size >= settings.PARALLEL_MIN_WEIGHTS else 1


@njit(parallel=True, fastmath=DOT_PRODUCTS, cache=True)
def _sgemm_column_bands(x, b, b_transposed, bias, out, parts):
    """out = x @ (b.T if b_transposed else b) + bias, by one single-threaded sgemm per band of columns.

    x: float32 [N, K], C-contiguous; b: float32 [K, M] (or [M, K] when b_transposed), as stored;
    bias: float32 [M], or [0] for none; out: float32 [N, M]. Band p (outputs band_edge(p) up to
    band_edge(p + 1)) runs on a worker thread: it reads only its own columns of the weights (so the
    bands together pack the weights once, as one call would) and adds their bias.
    """
    N, K = x.shape
    M = out.shape[1]
    b_layout = TRANS if b_transposed else NO_TRANS
    for p in prange(parts):
        begin, end = band_edge(p, parts, M, COLUMN_ALIGN), band_edge(p + 1, parts, M, COLUMN_ALIGN)
        if end <= begin:
            continue
        band = b[begin:] if b_transposed else b[:, begin:]  # a view; sgemm reads it with b's row stride
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            b_layout,
            N,
            end - begin,
            K,
            np.float32(1.0),
            x.ctypes.data,
            K,
            band.ctypes.data,
            b.shape[1],
            np.float32(0.0),
            out[:, begin:].ctypes.data,
            M,
        )
        if bias.size:
            for n in range(N):
                for j in range(begin, end):
                    out[n, j] += bias[j]


_NO_BIAS = np.zeros(0, dtype=np.float32)
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0


def _matmul_on_python_threads(x: np.ndarray, b: np.ndarray, out: np.ndarray, parts: int) -> None:
    """The fallback without a callable sgemm: out = x @ b in `parts` bands of columns, NumPy's matmul
    each, on the calling thread and a pool of up to threads - 1 others."""
    global _pool, _pool_workers
    workers = min(parts, numba.get_num_threads()) - 1
    if _pool_workers < workers:  # more threads were asked for: replace the pool, ending the old one's
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpt2-engine-blas")
        _pool_workers = workers
    M = out.shape[1]
    edges = [band_edge(p, parts, M, COLUMN_ALIGN) for p in range(parts + 1)]
    bands = [(a, z) for a, z in zip(edges[:-1], edges[1:]) if z > a]

    def one_band(a: int, z: int) -> None:
        out[:, a:z] = x @ b[:, a:z]

    if workers < 1:
        for a, z in bands:
            one_band(a, z)
        return
    pool = _pool
    assert pool is not None
    pending = [pool.submit(one_band, a, z) for a, z in bands[1:]]
    one_band(*bands[0])  # the calling thread takes the first band
    for job in pending:
        job.result()


def blas_bands(columns: int) -> int:
    """How many bands of columns (sgemm calls) a product with `columns` outputs is split into: a
    function of the matrix alone, never of the threads or the rows. sgemm may pick another inner
    kernel for another shape, and so change the last bits of an output; with bands fixed by the
    matrix, a prompt gives the same logits on any number of threads (a batch job's workers each
    take a share of the cores)."""
    return max(1, min(settings.BLAS_BANDS, columns // settings.MIN_BAND_COLUMNS))


def _blas_in_bands(x: np.ndarray, b: np.ndarray, b_transposed: bool, bias: np.ndarray | None, out: np.ndarray) -> None:
    """out = x @ (b.T if b_transposed else b) (+ bias): single-threaded BLAS on bands of columns,
    spread over the threads.

    x: float32 [N, K]; b as stored (weight [K, M], or the output layer's table [M, K] with
    b_transposed); out: float32 [N, M].
    """
    parts = blas_bands(out.shape[1])
    if SGEMM_AVAILABLE:
        # sgemm reads raw memory with row strides K and b.shape[1]: both must be C-contiguous (the
        # loader's weights are, so this copies nothing for them; a view passed in is copied once).
        x, b = np.ascontiguousarray(x), np.ascontiguousarray(b)
        _sgemm_column_bands(x, b, b_transposed, _NO_BIAS if bias is None else bias, out, parts)
        return
    b = b.T if b_transposed else b  # a view: BLAS reads it in place
    _matmul_on_python_threads(x, b, out, parts)
    if bias is not None:
        out += bias


def linear(x: np.ndarray, weight: Weight, bias: np.ndarray) -> np.ndarray:
    """x: float32 [N, K] @ weight [K, M] + bias [M] -> new float32 [N, M].

    weight: float32, float16, BFloat16Matrix or Q8Matrix (input_axis 0), kernels/formats.py."""
    if isinstance(weight, Q8Matrix) and weight.input_axis != 0:
        raise ValueError("linear() needs a Q8 weight [in, out] quantized along its input (input_axis=0)")
    stored, scales = _kernel_operands(weight)
    return _product(x, stored, scales, False, bias)


def matmul_transposed(x: np.ndarray, table: Weight) -> np.ndarray:
    """x: float32 [N, C] @ table [V, C]^T -> new float32 [N, V], reading `table` as stored.

    table: float32, float16, BFloat16Matrix or Q8Matrix (input_axis 1), kernels/formats.py. A Q8
    table is stored transposed ([C, V], kernels/formats.py), so its product is `linear`'s kernel
    with a zero bias."""
    if isinstance(table, Q8Matrix):
        if table.input_axis != 1:
            raise ValueError("matmul_transposed() needs a Q8 table [V, C] quantized along C (input_axis=1)")
        return _product(x, table.quants, table.scales, False, _zeros(table.quants.shape[1]))
    stored, scales = _kernel_operands(table)
    return _product(x, stored, scales, True, None)


def _kernel_operands(weight: Weight) -> tuple[np.ndarray, np.ndarray]:
    """The arrays the Numba kernels read: the stored elements (a float16 matrix as its bits, typed
    int16: kernels/widen.py) and a Q8 weight's scales (else an array [ceil(K/32), 0], never read)."""
    if isinstance(weight, Q8Matrix):
        return weight.quants, weight.scales
    if isinstance(weight, BFloat16Matrix):
        stored = weight.bits
    elif isinstance(weight, np.ndarray) and weight.dtype == np.float32:
        stored = weight
    elif isinstance(weight, np.ndarray) and weight.dtype == np.float16:
        stored = weight.view(np.int16)
    else:
        dequantize(weight)  # raises the TypeError naming what it got
        raise AssertionError("unreachable")
    if stored.ndim != 2:
        raise ValueError(f"a weight matrix must be 2-D, got shape {stored.shape}")
    return stored, np.empty((-(-stored.shape[0] // Q8_BLOCK), 0), dtype=np.float32)


_zero_biases: dict[int, np.ndarray] = {}


def _zeros(size: int) -> np.ndarray:
    """A float32 zero vector of `size`, kept (the output layer asks for one every step); private, and
    left writeable: a read-only array would be another type to Numba, and another compile."""
    zeros = _zero_biases.get(size)
    if zeros is None:
        zeros = _zero_biases[size] = np.zeros(size, dtype=np.float32)
    return zeros


@njit(parallel=True, cache=True)
def _widen_rows(weight, scales, out, parts):
    """out [K, M] float32 = weight [K, M] in any kernel format, widened (bands of rows in parallel)."""
    K, M = weight.shape
    for p in prange(parts):
        for k in range(p * K // parts, (p + 1) * K // parts):
            w, o, s = weight[k], out[k], scales[k // Q8_BLOCK]
            for j in range(M):
                o[j] = weight_at(w, s, j)


_scratch = threading.local()


def _widened(stored: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 matrix of a 16-bit or Q8 weight, for BLAS (a prompt's many rows): written into a
    per-thread scratch block reused from call to call, so a prompt pass allocates it once."""
    size = stored.size
    block = getattr(_scratch, "block", None)
    if block is None or block.size < size:
        block = _scratch.block = np.empty(size, dtype=np.float32)
    out = block[:size].reshape(stored.shape)
    _widen_rows(stored, scales, out, max(1, min(numba.get_num_threads(), stored.shape[0] // 64)))
    return out


def _product(
    x: np.ndarray, b: np.ndarray, scales: np.ndarray, b_transposed: bool, bias: np.ndarray | None
) -> np.ndarray:
    """The one dispatcher of `linear` and `matmul_transposed`: BLAS bands of columns for many rows (on the
    weights widened to float32 first, if they are not float32), the streaming kernels (serial or
    split across threads) for a few. b: the stored elements; scales: Q8 block scales or width 0."""
    if x.ndim != 2 or x.shape[1] != b.shape[1 if b_transposed else 0]:
        raise ValueError(f"cannot multiply x of shape {x.shape} by a weight stored as {b.shape}")
    N = x.shape[0]
    out = np.empty((N, b.shape[0] if b_transposed else b.shape[1]), dtype=np.float32)
    if N > settings.FEW_ROWS:
        if b.dtype != np.float32:
            b = _widened(b, scales)
        _blas_in_bands(x, b, b_transposed, bias, out)  # b read as stored: no transposed copy
        return out
    x = np.ascontiguousarray(x)
    threads = _threads_for(b)
    if b_transposed:
        if threads == 1:
            _matmul_transposed_few_rows_serial(x, b, out)
        else:
            _matmul_transposed_few_rows(x, b, out, threads)
    elif threads == 1:
        _linear_few_rows_serial(x, b, scales, bias, out)
    else:
        _linear_few_rows(x, b, scales, bias, out, threads)
    return out
