"""What every kernel shares: the floating-point freedoms given to LLVM, and when to use threads.

Fast-math flags (LLVM's names; each kernel takes the set it needs):
    contract   fuse a * b + c into one fused multiply-add (one rounding instead of two);
    reassoc    reorder sums, so that a dot product can run in several vector lanes at once;
    nsz        ignore the sign of zero;
    arcp       multiply by a reciprocal instead of dividing.
No flag assumes away NaN or infinity: a NaN in the weights stays visible in the output.

Batch invariance: a row's result must not depend on the other rows of its batch, nor on the
threads (tests/test_batch_invariance.py). With `reassoc`, LLVM picks the order of a sum when it
vectorises a loop, and it may pick differently each time the loop is compiled into another kernel
(the serial and the parallel twin of one kernel gave different attention sums). So a loop body
that sums under `reassoc` is its own `@njit` function, not `inline="always"`: it is optimised once,
on its own, and both twins call that one machine code.

A parallel kernel wakes the worker threads and ends in a barrier that waits for all of them; below
these sizes the work is smaller than that cost and the kernel runs on the calling thread. The
thresholds are read at call time, so a test can set them to 0 to run every parallel twin.
docs/speed.md gives the measurements behind them.
"""

FMA_ONLY = {"contract"}
ELEMENTWISE = FMA_ONLY  # exp and GELU: an element's result does not depend on its neighbours
ROW_SUMS = {"reassoc", "contract", "nsz"}  # LayerNorm: sums over a row in vector lanes
DOT_PRODUCTS = {"reassoc", "contract", "nsz", "arcp"}  # matrix products and attention

# Multiply-adds (B*H*T*S*D) below which attention runs on one thread.
PARALLEL_MIN_MULTIPLY_ADDS = 1 << 19
# Weights of a matrix below which a few-rows product runs on one thread (the matrix alone decides:
# a product's result is the same on any number of threads, and so is the choice for every batch).
PARALLEL_MIN_WEIGHTS = 1 << 19
PARALLEL_MIN_ELEMENTS = 1 << 18  # GELU: one decode step's few thousand elements stay on one thread
PARALLEL_MIN_ROWS = 64  # LayerNorm: a decode step's few rows stay on one thread

FEW_ROWS = 8  # products of up to this many rows stream the weights in Numba; more go to BLAS
MIN_BLOCK_ROWS = 8  # a BLAS row block is at least this tall (smaller: not worth a thread)
