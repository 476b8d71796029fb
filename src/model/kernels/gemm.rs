//! Owns the one matrix-multiply engine behind every matmul of the model
//! ([`gemm`]): `C[m, n] (=|+=) A[m, k] @ B[k, n]`, single-threaded, f32.
//! Must never thread, never allocate after a thread's first call of a given size (the
//! packing buffer is thread-local and reused), and never let an output element's value
//! depend on which other elements are computed in the same call.
//!
//! # The order (why results are bitwise reproducible)
//! Every output element is one fused-multiply-add chain over `k` in increasing order:
//! `acc = start; for kk in 0..k { acc = fma(A[i, kk], B[kk, j], acc) }; C[i, j] = acc`,
//! where `start` is `0`, `bias[j]` or the old `C[i, j]` ([`Init`]); [`gemm_then_add`]
//! stores `add[i, j] + acc` instead (one more rounded addition). Register tiling,
//! cache blocking over `k` (the accumulator is stored to `C` and reloaded, which is
//! exact) and the choice of instruction set only decide *when* each step of a chain
//! runs, never which operations it performs. Hence:
//! * the value of row `i` does not depend on `m` or on which other rows are in the call
//!   (rows `[0, n)` at once equal rows `[0, k)` and `[k, n)` in two calls, bitwise);
//!   the same holds for columns;
//! * every instruction-set path gives the same bits: AVX-512, AVX2 and portable all
//!   use a correctly rounded FMA (the portable path [`f32::mul_add`], which is slow on a
//!   CPU without hardware FMA, but still exact); a register's width only decides how
//!   many chains run side by side.
//!
//! # One micro-kernel, one impl per ISA
//! The micro-kernel (`tile`) is written once over the `Lanes` trait (one SIMD register:
//! zero, splat, load, store, masked load/store of the first `n` lanes, FMA, add). Each
//! path is an impl and a tile shape: `Zmm` (AVX-512, `12 x 32` tiles: 24 of the 32
//! registers accumulate), `Ymm` (AVX2, `6 x 16`), `Portable8` (plain Rust, `4 x 8`).
//! A tile's ragged last columns use masked loads and stores, so nothing is read or
//! written past a row of `B`, `C`, the bias or the added matrix (`tests/kernels_guard.rs`
//! puts every operand against a guard page). Adding an ISA is adding an impl.
//!
//! # Speed
//! `B` is packed per `256 x 256` block into contiguous tiles of the path's width, and
//! `A` tiles are packed when read down columns. Without packing `B`, a `B` 1024 floats
//! wide steps 4 KiB from row to row, every row lands in the same L1 set, and the wide
//! shapes fell to 64 GFLOP/s. In training the operands are rarely in cache: each row
//! tile asks for the next tile's rows of `A` and `C` (and a packed `inp^T` block for all
//! of its rows) with L2 prefetch hints. `benches/kernels.rs` measures every product of
//! shape M on each path beside the core's FMA peak (`peak/*`, `gemm_m/*`).
//!
//! # Layout
//! `A` and `B` are read through arbitrary strides (`A[i, kk] = a[i * a_rs + kk * a_cs]`,
//! `B[kk, j] = b[kk * b_rs + j * b_cs]`), so `inp^T` and `weight^T` need no copy by the
//! caller (a `B` read down its columns is transposed while it is packed); `C` is
//! row-major with unit column stride and leading dimension `ldc`.

use super::prefetch_l2;
use super::transpose::transpose;
use crate::isa::Isa;
use core::ops::Range;

/// How each output element's FMA chain starts.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a> {
    /// From `0.0` (overwrite `C`).
    Zero,
    /// From `bias[j]` (overwrite `C`); `bias` holds at least `n` floats.
    Bias(&'a [f32]),
    /// From the current `C[i, j]` (accumulate into `C`).
    Accumulate,
}

/// Depth of one cache block over `k`: a `KC x NC` block of `B` stays in L2 and an
/// `MR x KC` tile of `A` in L1.
const KC: usize = 256;

/// Width of one column block of `B`. Packed, a `KC x NC` block is 256 KiB: it stays in
/// L2 while every row tile streams past it, and a tile reads it contiguously (unpacked,
/// a wide `B` steps by its row stride, which at 4 KiB maps every row to one L1 set).
const NC: usize = 256;

/// `B` is packed only when at least this many rows (eight 6-row tiles) reuse the copy
/// (or when it must be: a `B` read down its columns). Attention's 12-row causal blocks
/// ran 15-25% slower when they packed their small, L1-resident `B`.
const PACK_B_MIN_ROWS: usize = 48;

thread_local! {
    /// Per-thread buffer for the packed block of `B` (grown once to `KC x NC`).
    static B_PACK: core::cell::Cell<Vec<f32>> = const { core::cell::Cell::new(Vec::new()) };
    /// Per-thread buffer for one packed row tile of `A` (grown once to `KC x MAX_MR`).
    static A_PACK: core::cell::Cell<Vec<f32>> = const { core::cell::Cell::new(Vec::new()) };
}

/// The largest row-tile height of any path (the remainder dispatch covers `1..MAX_MR`).
const MAX_MR: usize = AVX512_MR;

/// `C[i, j] = chain(start(i, j), A[i, 0..k], B[0..k, j])` for `i < m`, `j < n` (see the
/// module doc for the exact order).
///
/// `A[i, kk] = a[i * a_rs + kk * a_cs]`, `B[kk, j] = b[kk * b_rs + j * b_cs]`,
/// `C[i, j] = c[i * ldc + j]`.
///
/// # Panics
/// If a slice is too short for the shape and strides, or `ldc < n`
/// (checked up front, so the unchecked inner loops never read or write out of bounds).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    init: Init<'_>,
) {
    let isa = crate::isa::active();
    run(
        isa, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, init, None,
    )
}

/// [`gemm`] on a chosen [`Isa`] path (for tests and benches: every path gives the
/// same bits). A path this CPU does not support ([`Isa::supported`]) runs as
/// [`Isa::Portable`].
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_on(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    init: Init<'_>,
) {
    run(
        checked(isa),
        m,
        n,
        k,
        a,
        a_rs,
        a_cs,
        b,
        b_rs,
        b_cs,
        c,
        ldc,
        init,
        None,
    )
}

/// [`gemm`], then `C[i, j] = add[i, j] + C[i, j]` as each finished element is stored
/// (`add` has `C`'s layout: `add[i * ldc + j]`). Bitwise the same as the `gemm` call
/// followed by a separate elementwise add (one rounded addition either way; IEEE
/// addition is commutative), without the extra pass over memory: the residual
/// connection after a projection.
///
/// # Panics
/// As [`gemm`], or if `add` is too short for `C`'s shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm_then_add(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    init: Init<'_>,
    add: &[f32],
) {
    let isa = crate::isa::active();
    run(
        isa,
        m,
        n,
        k,
        a,
        a_rs,
        a_cs,
        b,
        b_rs,
        b_cs,
        c,
        ldc,
        init,
        Some(add),
    )
}

/// [`gemm_then_add`] on a chosen [`Isa`] path (as [`gemm_on`]).
///
/// # Panics
/// As [`gemm_then_add`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_then_add_on(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    init: Init<'_>,
    add: &[f32],
) {
    run(
        checked(isa),
        m,
        n,
        k,
        a,
        a_rs,
        a_cs,
        b,
        b_rs,
        b_cs,
        c,
        ldc,
        init,
        Some(add),
    )
}

/// `isa` if this CPU runs it, else the portable path.
fn checked(isa: Isa) -> Isa {
    if isa.supported() {
        isa
    } else {
        Isa::Portable
    }
}

/// The checks and the dispatch behind every entry point (`isa` must be supported: it
/// comes from [`crate::isa::active`] or [`checked`]).
#[allow(clippy::too_many_arguments)]
fn run(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    init: Init<'_>,
    add: Option<&[f32]>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "gemm: leading dimension of C below n");
    assert!(fits(c.len(), m, ldc, n, 1), "gemm: C too short");
    if let Init::Bias(bias) = init {
        assert!(bias.len() >= n, "gemm: bias too short");
    }
    if let Some(add) = add {
        assert!(
            fits(add.len(), m, ldc, n, 1),
            "gemm: the added matrix is too short"
        );
    }
    if k == 0 {
        for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
            match init {
                Init::Zero => row[..n].fill(0.0),
                Init::Bias(bias) => row[..n].copy_from_slice(&bias[..n]),
                Init::Accumulate => {}
            }
            if let Some(add) = add {
                for (x, &y) in row[..n].iter_mut().zip(&add[i * ldc..]) {
                    *x += y; // = y + x: IEEE addition is commutative
                }
            }
        }
        return;
    }
    assert!(fits(a.len(), m, a_rs, k, a_cs), "gemm: A too short");
    assert!(fits(b.len(), k, b_rs, n, b_cs), "gemm: B too short");
    let p = Problem {
        m,
        n,
        k,
        a: a.as_ptr(),
        a_rs,
        a_cs,
        b: b.as_ptr(),
        b_rs,
        b_cs,
        c: c.as_mut_ptr(),
        ldc,
        bias: match init {
            Init::Bias(bias) => Some(bias.as_ptr()),
            _ => None,
        },
        accumulate: matches!(init, Init::Accumulate),
        add: add.map(<[f32]>::as_ptr),
    };
    // The cargo-fuzz build (`cfg(fuzzing)`: address sanitizer and coverage on every
    // branch) compiles only the portable engine: no fuzz target runs a matmul, and the
    // instrumented SIMD variants alone took over ten minutes to compile.
    match isa {
        #[cfg(all(target_arch = "x86_64", not(fuzzing)))]
        // SAFETY: the bounds of every access were checked above (see `Problem`), and
        // the CPU's AVX-512 support was checked at run time by `Isa::supported`.
        Isa::Avx512 => unsafe { gemm_avx512(&p) },
        #[cfg(all(target_arch = "x86_64", not(fuzzing)))]
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => unsafe { gemm_avx2(&p) },
        // SAFETY: the bounds of every access were checked above; the portable tile
        // needs no CPU feature.
        _ => unsafe { gemm_body::<Portable8, PORTABLE_MR, PORTABLE_NV>(&p) },
    }
}

/// Whether every index `i * rs + j * cs` (`i < rows`, `j < cols`, both at least 1) is
/// below `len`, computed without overflow (an overflowing shape does not fit).
fn fits(len: usize, rows: usize, rs: usize, cols: usize, cs: usize) -> bool {
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|x| (cols - 1).checked_mul(cs).and_then(|y| x.checked_add(y)));
    matches!(last, Some(last) if last < len)
}

/// A validated problem: for `i < m`, `kk < k`, `j < n`, the addresses
/// `a + i*a_rs + kk*a_cs`, `b + kk*b_rs + j*b_cs`, `c + i*ldc + j` (and `add + i*ldc + j`)
/// and `bias + j` lie inside
/// the slices they came from ([`gemm`] asserts this before building one), and `c` is
/// the only live reference to its memory for the duration of the call.
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
    c: *mut f32,
    ldc: usize,
    bias: Option<*const f32>,
    accumulate: bool,
    /// Added to each element as it is finally stored (C's layout; see [`gemm_then_add`]).
    add: Option<*const f32>,
}

/// What a tile does with its finished accumulators.
#[derive(Clone, Copy)]
enum End {
    /// Store them (more `k` blocks follow, or nothing is added).
    Store,
    /// Store `add[r, j] + acc` (the last `k` block of [`gemm_then_add`]); the pointer is
    /// the tile's first element of `add`, with C's leading dimension.
    AddStore(*const f32),
}

/// Row-tile height of the AVX-512 path: `12 x 32` tiles keep 24 accumulators, two
/// rows of `B` and a broadcast in the 32 zmm registers.
const AVX512_MR: usize = 12;
/// 16-lane registers per tile row of the AVX-512 path (tile width `16 * AVX512_NV`).
#[cfg_attr(fuzzing, allow(dead_code))] // only the SIMD variants use it
const AVX512_NV: usize = 2;
/// Row-tile height of the AVX2 path (`6 x 16` tiles: 12 accumulators of 16 ymm).
#[cfg_attr(fuzzing, allow(dead_code))] // only the SIMD variants use it
const AVX2_MR: usize = 6;
/// 8-lane registers per tile row of the AVX2 path.
#[cfg_attr(fuzzing, allow(dead_code))] // only the SIMD variants use it
const AVX2_NV: usize = 2;
/// Row-tile height of the portable path.
const PORTABLE_MR: usize = 4;
/// Logical 8-lane registers per tile row of the portable path.
const PORTABLE_NV: usize = 1;

/// Variant compiled for AVX-512: `AVX512_MR x 16 AVX512_NV` register tiles.
///
/// # Safety
/// `p` must satisfy the [`Problem`] invariant and the CPU must support the features
/// of [`Isa::Avx512`].
#[cfg(all(target_arch = "x86_64", not(fuzzing)))]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn gemm_avx512(p: &Problem) {
    // SAFETY: forwarded from this function's contract.
    unsafe { gemm_body::<x86::Zmm, AVX512_MR, AVX512_NV>(p) }
}

/// Variant compiled for AVX2 + FMA: `AVX2_MR x 8 AVX2_NV` register tiles.
///
/// # Safety
/// `p` must satisfy the [`Problem`] invariant and the CPU must support AVX2 and FMA.
#[cfg(all(target_arch = "x86_64", not(fuzzing)))]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2(p: &Problem) {
    // SAFETY: forwarded from this function's contract.
    unsafe { gemm_body::<x86::Ymm, AVX2_MR, AVX2_NV>(p) }
}

/// Where a tile's chains start in the current `k` block.
#[derive(Clone, Copy)]
enum Start {
    Zero,
    Bias(*const f32),
    Load,
}

/// The blocked loop nest: `k` blocks outermost, then `NC`-column blocks of `B`
/// (packed when enough rows reuse them), then `MR`-row blocks, then `NR`-column tiles.
///
/// # Safety
/// `p` must satisfy the [`Problem`] invariant; the CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn gemm_body<V: Lanes, const MR: usize, const NV: usize>(p: &Problem) {
    debug_assert!(MR <= MAX_MR);
    let full = V::W * NV;
    // Packed copy of one `R x kb` tile of `A` (see `row_block`), only when `A` is read
    // down its columns and at least four column tiles reuse it. Like `b_pack`, taken
    // out of its thread-local for the call (an 8 KiB stack array was zeroed per call
    // and made every call probe a 10 KiB stack frame).
    let mut a_pack = if p.a_cs != 1 && p.n.min(NC) >= 4 * full {
        let mut buf = A_PACK.take();
        if buf.len() < KC * MAX_MR {
            buf.resize(KC * MAX_MR, 0.0);
        }
        buf
    } else {
        Vec::new()
    };
    let pack = &mut a_pack[..];
    // Packed `kb x nc` block of `B` (full tiles only), taken out of the thread-local
    // for the call and put back after, so nothing is borrowed across the call. A `B`
    // read down its columns is always packed: the register tiles need unit stride.
    let pack_b = (p.m >= PACK_B_MIN_ROWS || p.b_cs != 1) && p.n >= full;
    let mut b_pack = if pack_b {
        let mut buf = B_PACK.take();
        if buf.len() < KC * NC {
            buf.resize(KC * NC, 0.0);
        }
        buf
    } else {
        Vec::new()
    };
    let mut k0 = 0;
    while k0 < p.k {
        let kb = KC.min(p.k - k0);
        let start = if k0 > 0 || p.accumulate {
            Start::Load
        } else {
            match p.bias {
                Some(bias) => Start::Bias(bias),
                None => Start::Zero,
            }
        };
        let end = match p.add {
            Some(add) if k0 + kb == p.k => End::AddStore(add),
            _ => End::Store,
        };
        let mut j0 = 0;
        while j0 < p.n {
            let cols = j0..NC.min(p.n - j0) + j0;
            let packed = if pack_b {
                // SAFETY: rows k0..k0+kb <= k and columns `cols` <= n of `B` are in
                // bounds (Problem invariant); `b_pack` holds KC x NC >= kb x cols.len().
                Some(unsafe { pack_b_block(p, &mut b_pack, k0, kb, cols.clone(), full) })
            } else {
                None
            };
            if j0 == 0 && !pack.is_empty() && p.a_rs == 1 {
                // `A` is `inp^T`: the block's rows of `inp` are read a few floats at a
                // time by every row tile; ask for all of them up front (once per `k`
                // block, not again for each column block).
                for kk in k0..k0 + kb {
                    // SAFETY: (0, kk) .. (m - 1, kk) lie inside `A` (Problem invariant)
                    // and are contiguous since a_rs == 1.
                    prefetch_l2(unsafe { core::slice::from_raw_parts(p.a.add(kk * p.a_cs), p.m) });
                }
            }
            let mut i = 0;
            while i + MR <= p.m {
                // The next row tile's rows of `A` (when read along rows) and of `C`.
                if p.a_cs == 1 && i + 2 * MR <= p.m {
                    for r in i + MR..i + 2 * MR {
                        // SAFETY: row r < m, columns k0..k0 + kb of `A` and `cols` of
                        // `C` are in bounds (Problem invariant); a_cs == 1, and C's
                        // columns are contiguous.
                        unsafe {
                            prefetch_l2(core::slice::from_raw_parts(p.a.add(r * p.a_rs + k0), kb));
                            let c_row = p.c.add(r * p.ldc + cols.start);
                            prefetch_l2(core::slice::from_raw_parts(c_row, cols.len()));
                        }
                    }
                }
                // SAFETY: rows i..i+MR <= m, k block k0..k0+kb <= k and columns `cols`
                // <= n are in bounds.
                unsafe {
                    row_block::<V, MR, NV>(p, pack, i..i + MR, k0, kb, &cols, packed, start, end)
                };
                i += MR;
            }
            let rest = p.m - i;
            let r = i..p.m;
            let c = &cols;
            // SAFETY: rows i..m, the k block and the columns are in bounds.
            unsafe {
                by_height!(rest, MR; row_block::<V, _, NV>(p, pack, r, k0, kb, c, packed, start, end);
                    1 2 3 4 5 6 7 8 9 10 11)
            }
            j0 = cols.end;
        }
        k0 += kb;
    }
    if pack_b {
        B_PACK.set(b_pack);
    }
    if !a_pack.is_empty() {
        A_PACK.set(a_pack);
    }
}

/// Copies the full `width`-column tiles of `B[k0..k0 + kb, cols]` into `buf`, tile
/// after tile, each tile `kb` rows of `width` contiguous floats, and returns where
/// they are. The values are copied unchanged, so the results are too.
///
/// # Safety
/// `p` must satisfy the [`Problem`] invariant, `k0 + kb <= p.k`, `cols.end <= p.n`,
/// and `buf.len() >= kb * cols.len()`.
#[inline(always)]
unsafe fn pack_b_block(
    p: &Problem,
    buf: &mut [f32],
    k0: usize,
    kb: usize,
    cols: Range<usize>,
    width: usize,
) -> BPacked {
    let tiles = cols.len() / width;
    debug_assert!(buf.len() >= kb * tiles * width);
    for t in 0..tiles {
        let dst = &mut buf[t * kb * width..(t + 1) * kb * width];
        let j = cols.start + t * width;
        if p.b_cs == 1 {
            for (kk, row) in dst.chunks_exact_mut(width).enumerate() {
                // SAFETY: row k0 + kk < k and columns j..j + width <= cols.end <= n lie
                // inside `B` (Problem invariant), contiguous since b_cs == 1.
                let src =
                    unsafe { core::slice::from_raw_parts(p.b.add((k0 + kk) * p.b_rs + j), width) };
                row.copy_from_slice(src);
            }
        } else if p.b_rs == 1 {
            // `B` is a transposed row-major matrix: its `width` columns are contiguous
            // rows of floats `b_cs` apart; transpose them in 8 x 8 register blocks.
            // SAFETY: column j + jj (jj < width, j + width <= n) has its rows
            // k0..k0 + kb (<= k) inside `B` (Problem invariant), so the block from
            // (k0, j) spans (width - 1) * b_cs + kb floats of it.
            let src = unsafe {
                core::slice::from_raw_parts(p.b.add(k0 + j * p.b_cs), (width - 1) * p.b_cs + kb)
            };
            transpose(dst, src, width, kb, p.b_cs);
        } else {
            // Down each column.
            for jj in 0..width {
                // SAFETY: (k0, j + jj) lies inside `B` (Problem invariant).
                let col = unsafe { p.b.add(k0 * p.b_rs + (j + jj) * p.b_cs) };
                for kk in 0..kb {
                    // SAFETY: rows k0 + kk < k of column j + jj < n lie inside `B`.
                    dst[kk * width + jj] = unsafe { *col.add(kk * p.b_rs) };
                }
            }
        }
    }
    BPacked {
        ptr: buf.as_ptr(),
        tile_len: kb * width,
        tiles,
    }
}

/// Where [`pack_b_block`] put a column block's full tiles: tile `t` (`t < tiles`) has
/// its `kb` rows of `width` floats at `ptr + t * tile_len`, with row stride `width`.
#[derive(Clone, Copy)]
struct BPacked {
    ptr: *const f32,
    tile_len: usize,
    tiles: usize,
}

/// `by_height!(rest < MR; f::<V, _, NV>(args); 1 2 ...)` calls `f::<V, rest, NV>(args)`
/// for a run-time row count `rest` (0 does nothing): the remainder rows of a column
/// block get a tile of their exact height. Heights of `MR` and above are never
/// instantiated (their arms are cut at compile time), so each path compiles only the
/// heights its own tile can leave.
macro_rules! by_height {
    ($rest:expr, $mr:ident; $f:ident::<$v:ident, _, $nv:ident> $args:tt; $($h:literal)*) => {
        match $rest {
            0 => {}
            $($h if const { $h < $mr } => $f::<$v, $h, $nv> $args,)*
            _ => unreachable!("remainder rows below MAX_MR = {MAX_MR}"),
        }
    };
}
use by_height;

/// Rows `rows` (exactly `R` of them), columns `cols`, `k` block `k0..k0 + kb`; full
/// column tiles read `B` from `packed` when given.
///
/// # Safety
/// `p` must satisfy the [`Problem`] invariant, `rows.end <= p.m`, `k0 + kb <= p.k`,
/// `cols.end <= p.n`; `packed`, if any, must be [`pack_b_block`]'s result for this
/// `k0`, `kb` and `cols` (and still alive); the CPU must support `V`'s instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block<V: Lanes, const R: usize, const NV: usize>(
    p: &Problem,
    pack: &mut [f32],
    rows: Range<usize>,
    k0: usize,
    kb: usize,
    cols: &Range<usize>,
    packed: Option<BPacked>,
    start: Start,
    end: End,
) {
    debug_assert_eq!(rows.len(), R);
    // SAFETY: (rows.start, k0) is in bounds (rows.start < m, k0 < k); the tile
    // functions only step within R rows and kb steps of k, in bounds by the contract.
    let a = unsafe { p.a.add(rows.start * p.a_rs + k0 * p.a_cs) };
    let full = V::W * NV;
    // When `A` is read down its columns (`a_cs != 1`, as in `inp^T`), every step of `k`
    // touches a new cache line; copy the tile to `[kb][R]` order first (the values and
    // so the results are unchanged) when the caller provided room (`gemm_body` does
    // when enough column tiles reuse the copy).
    let ap = if !pack.is_empty() {
        if p.a_rs == 1 {
            // The tile's R rows are contiguous at each step of k (`inp^T`): copy them
            // as one short slice.
            for (kk, dst) in pack[..kb * R].chunks_exact_mut(R).enumerate() {
                // SAFETY: rows 0..R at step kk < kb are in bounds (contract) and
                // contiguous (a_rs == 1).
                dst.copy_from_slice(unsafe { core::slice::from_raw_parts(a.add(kk * p.a_cs), R) });
            }
        } else {
            for kk in 0..kb {
                for r in 0..R {
                    // SAFETY: r < R rows and kk < kb steps of k are in bounds (contract).
                    pack[kk * R + r] = unsafe { *a.add(r * p.a_rs + kk * p.a_cs) };
                }
            }
        }
        APanel {
            ptr: pack.as_ptr(),
            rs: 1,
            cs: R,
        }
    } else {
        APanel {
            ptr: a,
            rs: p.a_rs,
            cs: p.a_cs,
        }
    };
    debug_assert!(full <= EDGE_MAX);
    let mut j = cols.start;
    while j < cols.end {
        let nr = full.min(cols.end - j);
        let tile_ix = (j - cols.start) / full;
        // SAFETY: columns j..j+nr <= cols.end <= n; see above for rows and k; a packed
        // tile `tile_ix < packed.tiles` holds kb rows of `full` floats.
        unsafe {
            let (b, b_rs, b_cs) = match packed {
                Some(bp) if nr == full && tile_ix < bp.tiles => {
                    (bp.ptr.add(tile_ix * bp.tile_len), full, 1)
                }
                _ => (p.b.add(k0 * p.b_rs + j * p.b_cs), p.b_rs, p.b_cs),
            };
            let c = p.c.add(rows.start * p.ldc + j);
            let start = match start {
                Start::Bias(bias) => Start::Bias(bias.add(j)),
                s => s,
            };
            let end = match end {
                End::AddStore(add) => End::AddStore(add.add(rows.start * p.ldc + j)),
                e => e,
            };
            if b_cs == 1 && nr == full {
                tile::<V, R, NV, true>(nr, kb, ap, b, b_rs, c, p.ldc, start, end);
            } else if b_cs == 1 {
                // The ragged last columns, with masked loads and stores.
                tile::<V, R, NV, false>(nr, kb, ap, b, b_rs, c, p.ldc, start, end);
            } else {
                // A strided `B` is packed whenever it has a full tile, so only the
                // ragged edge of a narrow one is read in place.
                tile_edge::<R>(nr, kb, ap, b, b_rs, b_cs, c, p.ldc, start, end);
            }
        }
        j += nr;
    }
}

/// A tile of `A`: element `(r, kk)` at `ptr + r * rs + kk * cs`.
#[derive(Clone, Copy)]
struct APanel {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

/// Widest tile [`tile_edge`] handles.
const EDGE_MAX: usize = 32;

/// Portable `R x nr` tile (`nr <= EDGE_MAX`) over `kb` steps of `k`, with
/// [`f32::mul_add`] (a hardware FMA where the caller's target features have one).
///
/// # Safety
/// For `r < R`, `kk < kb`, `j < nr`: `a.ptr + r*a.rs + kk*a.cs`, `b + kk*b_rs + j*b_cs`,
/// `c + r*ldc + j` (and `bias + j` for [`Start::Bias`], `add + r*ldc + j` for
/// [`End::AddStore`]) are valid, and `c` is not aliased.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_edge<const R: usize>(
    nr: usize,
    kb: usize,
    a: APanel,
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
    c: *mut f32,
    ldc: usize,
    start: Start,
    end: End,
) {
    debug_assert!(nr <= EDGE_MAX);
    let mut acc = [[0.0f32; EDGE_MAX]; R];
    // SAFETY (whole body): every offset stays within the ranges of the contract
    // (column indices are below `nr`).
    unsafe {
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate().take(nr) {
                *x = match start {
                    Start::Zero => 0.0,
                    Start::Bias(bias) => *bias.add(j),
                    Start::Load => *c.add(r * ldc + j),
                };
            }
        }
        for kk in 0..kb {
            let brow = b.add(kk * b_rs);
            let acol = a.ptr.add(kk * a.cs);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = *acol.add(r * a.rs);
                for (j, x) in row.iter_mut().enumerate().take(nr) {
                    *x = av.mul_add(*brow.add(j * b_cs), *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &x) in row.iter().enumerate().take(nr) {
                *c.add(r * ldc + j) = match end {
                    End::Store => x,
                    End::AddStore(add) => *add.add(r * ldc + j) + x,
                };
            }
        }
    }
}

/// One SIMD register of `W` single-precision lanes: the operations a register tile
/// needs. Every ISA is one impl of this trait; [`tile`] is the one micro-kernel body.
/// All methods are `unsafe`: the pointer ones read or write through raw pointers, and
/// the x86 impls need their CPU features (they are only inlined into functions
/// compiled with them).
pub(super) trait Lanes: Copy {
    /// Lanes per register.
    const W: usize;
    /// All lanes `0.0`.
    unsafe fn zero() -> Self;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self;
    /// Lanes from `p[0..W]`.
    unsafe fn load(p: *const f32) -> Self;
    /// Lanes `0..n` from `p[0..n]` (`0 < n < W`), the rest `0.0`; never reads `p[n..]`.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    /// Writes the lanes to `p[0..W]`.
    unsafe fn store(self, p: *mut f32);
    /// Writes lanes `0..n` to `p[0..n]` (`0 < n < W`); never touches `p[n..]`.
    unsafe fn store_n(self, p: *mut f32, n: usize);
    /// `a * b + c` per lane, rounded once (a fused multiply-add).
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// `a + b` per lane.
    unsafe fn add(a: Self, b: Self) -> Self;
}

/// Loads the first `n` lanes (`0 < n <= W`) of a register: a full load when `n == W`.
///
/// # Safety
/// `p[0..n]` is readable; the CPU supports `V`'s instructions.
#[inline(always)]
unsafe fn load_lanes<V: Lanes>(p: *const f32, n: usize) -> V {
    // SAFETY: forwarded from the contract.
    unsafe {
        if n == V::W {
            V::load(p)
        } else {
            V::load_n(p, n)
        }
    }
}

/// Stores the first `n` lanes (`0 < n <= W`) of a register.
///
/// # Safety
/// `p[0..n]` is writable and unaliased; the CPU supports `V`'s instructions.
#[inline(always)]
unsafe fn store_lanes<V: Lanes>(v: V, p: *mut f32, n: usize) {
    // SAFETY: forwarded from the contract.
    unsafe {
        if n == V::W {
            v.store(p)
        } else {
            v.store_n(p, n)
        }
    }
}

/// The micro-kernel: an `R x nr` tile (`nr <= W * NV`; `FULL` means `nr == W * NV`)
/// over `kb` steps of `k`, in `R x NV` registers of accumulators. Per step it loads
/// `NV` registers of a row of `B` (unit column stride, row stride `ldb`), broadcasts
/// each row's `A` element and does one [`Lanes::fma`] per accumulator: each output
/// element's chain is exactly the module doc's. A ragged tile (`!FULL`) masks its
/// loads and stores of `B`, `C`, the bias and the added matrix to the `nr` columns.
///
/// # Safety
/// For `r < R`, `kk < kb`, `j < nr`: `a.ptr + r*a.rs + kk*a.cs`, `b + kk*ldb + j`,
/// `c + r*ldc + j` (and `bias + j` for [`Start::Bias`], `add + r*ldc + j` for
/// [`End::AddStore`]) are valid, `c` is not aliased, and the CPU supports `V`'s
/// instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<V: Lanes, const R: usize, const NV: usize, const FULL: bool>(
    nr: usize,
    kb: usize,
    a: APanel,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    start: Start,
    end: End,
) {
    debug_assert!(nr <= V::W * NV && (nr == V::W * NV) == FULL);
    // Lanes of register `q` that hold columns (constant `W` for a full tile, so the
    // masks vanish); a register past `nr` holds none and is never loaded or stored.
    let lanes: [usize; NV] = core::array::from_fn(|q| {
        if FULL {
            V::W
        } else {
            nr.saturating_sub(q * V::W).min(V::W)
        }
    });
    // SAFETY (whole body): every pointer offset stays within the ranges of the
    // contract (register q touches columns q*W .. q*W + lanes[q] <= nr), and the CPU
    // supports V (contract).
    unsafe {
        let mut acc = [[V::zero(); NV]; R];
        match start {
            Start::Zero => {}
            Start::Bias(bias) => {
                let mut v = [V::zero(); NV];
                for (q, x) in v.iter_mut().enumerate() {
                    if lanes[q] > 0 {
                        *x = load_lanes(bias.add(V::W * q), lanes[q]);
                    }
                }
                acc = [v; R];
            }
            Start::Load => {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (q, x) in row.iter_mut().enumerate() {
                        if lanes[q] > 0 {
                            *x = load_lanes(c.add(r * ldc + V::W * q), lanes[q]);
                        }
                    }
                }
            }
        }
        let mut ap = a.ptr;
        let mut bp = b;
        for _ in 0..kb {
            let mut bv = [V::zero(); NV];
            for (q, x) in bv.iter_mut().enumerate() {
                if lanes[q] > 0 {
                    *x = load_lanes(bp.add(V::W * q), lanes[q]);
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = V::splat(*ap.add(r * a.rs));
                for (x, &bq) in row.iter_mut().zip(bv.iter()) {
                    *x = V::fma(av, bq, *x);
                }
            }
            ap = ap.add(a.cs);
            // The last step's pointer is never dereferenced and may point past `B`.
            bp = bp.wrapping_add(ldb);
        }
        for (r, row) in acc.iter().enumerate() {
            for (q, &x) in row.iter().enumerate() {
                if lanes[q] == 0 {
                    continue;
                }
                let at = r * ldc + V::W * q;
                let x = match end {
                    End::Store => x,
                    End::AddStore(add) => V::add(load_lanes(add.add(at), lanes[q]), x),
                };
                store_lanes(x, c.add(at), lanes[q]);
            }
        }
    }
}

/// The portable register: eight logical lanes in plain Rust, [`f32::mul_add`] per lane
/// (libm's exactly rounded `fmaf` on a target without FMA).
#[derive(Clone, Copy)]
struct Portable8([f32; 8]);

impl Lanes for Portable8 {
    const W: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable8([x; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees p[0..8] is readable.
        Portable8(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        let mut v = [0.0; 8];
        for (i, x) in v.iter_mut().enumerate().take(n) {
            // SAFETY: i < n and the caller guarantees p[0..n] is readable.
            *x = unsafe { *p.add(i) };
        }
        Portable8(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees p[0..8] is writable.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        for (i, &x) in self.0.iter().enumerate().take(n) {
            // SAFETY: i < n and the caller guarantees p[0..n] is writable.
            unsafe { *p.add(i) = x };
        }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Portable8(core::array::from_fn(|i| a.0[i].mul_add(b.0[i], c.0[i])))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Portable8(core::array::from_fn(|i| a.0[i] + b.0[i]))
    }
}

/// The x86-64 registers: `Ymm` (AVX2 + FMA) and `Zmm` (AVX-512), explicit intrinsics so
/// the accumulators stay in registers. Only inlined into `gemm_avx2` / `gemm_avx512`,
/// which are compiled with the features these intrinsics need.
#[cfg(all(target_arch = "x86_64", not(fuzzing)))]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// A 256-bit register of 8 lanes.
    #[derive(Clone, Copy)]
    pub(super) struct Ymm(__m256);

    /// The mask of the first `n` lanes of a [`Ymm`] (sign bit set where `lane < n`).
    ///
    /// # Safety
    /// The CPU supports AVX2.
    #[inline(always)]
    unsafe fn ymm_mask(n: usize) -> __m256i {
        // SAFETY: register-only AVX2 operations (contract).
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    /// `impl Lanes for $reg` (a newtype over one register of `$w` lanes) from the ISA's
    /// intrinsics: the list of operations is written once, each ISA names its own.
    macro_rules! lanes_impl {
        ($reg:ident, $w:expr,
         zero: $zero:ident, splat: $splat:ident, load: $load:ident, store: $store:ident,
         load_n: |$lp:ident, $ln:ident| $load_n:expr, store_n: |$sv:ident, $sp:ident, $sn:ident| $store_n:expr,
         fma: |$fa:ident, $fb:ident, $fc:ident| $fma:expr, add: $add:ident) => {
            // SAFETY (every method): the CPU supports the features named (the trait's
            // contract: these are only inlined into the gemm variant compiled with
            // them), and the pointer methods' ranges are the caller's to guarantee;
            // masked lanes are neither read nor written (and never fault).
            impl Lanes for $reg {
                const W: usize = $w;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    // SAFETY: register-only operation; the CPU has the features (see above).
                    unsafe { $reg($zero()) }
                }
                #[inline(always)]
                unsafe fn splat(x: f32) -> Self {
                    // SAFETY: register-only operation; the CPU has the features (see above).
                    unsafe { $reg($splat(x)) }
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    // SAFETY: the caller guarantees the pointed-to lanes are valid (see above).
                    unsafe { $reg($load(p)) }
                }
                #[inline(always)]
                unsafe fn load_n($lp: *const f32, $ln: usize) -> Self {
                    // SAFETY: only the first n lanes are read; the caller guarantees them.
                    unsafe { $reg($load_n) }
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    // SAFETY: the caller guarantees the pointed-to lanes are valid (see above).
                    unsafe { $store(p, self.0) }
                }
                #[inline(always)]
                unsafe fn store_n(self, $sp: *mut f32, $sn: usize) {
                    let $sv = self.0;
                    // SAFETY: only the first n lanes are written; the caller guarantees them.
                    unsafe { $store_n }
                }
                #[inline(always)]
                unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                    let ($fa, $fb, $fc) = (a.0, b.0, c.0);
                    // SAFETY: register-only operation; the CPU has the features (see above).
                    unsafe { $reg($fma) }
                }
                #[inline(always)]
                unsafe fn add(a: Self, b: Self) -> Self {
                    // SAFETY: register-only operation; the CPU has the features (see above).
                    unsafe { $reg($add(a.0, b.0)) }
                }
            }
        };
    }

    lanes_impl!(Ymm, 8,
        zero: _mm256_setzero_ps, splat: _mm256_set1_ps, load: _mm256_loadu_ps,
        store: _mm256_storeu_ps,
        load_n: |p, n| _mm256_maskload_ps(p, ymm_mask(n)),
        store_n: |v, p, n| _mm256_maskstore_ps(p, ymm_mask(n), v),
        fma: |a, b, c| _mm256_fmadd_ps(a, b, c), add: _mm256_add_ps);

    /// A 512-bit register of 16 lanes.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    /// The mask of the first `n` (`< 16`) lanes of a [`Zmm`].
    #[inline(always)]
    fn zmm_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    lanes_impl!(Zmm, 16,
        zero: _mm512_setzero_ps, splat: _mm512_set1_ps, load: _mm512_loadu_ps,
        store: _mm512_storeu_ps,
        load_n: |p, n| _mm512_maskz_loadu_ps(zmm_mask(n), p),
        store_n: |v, p, n| _mm512_mask_storeu_ps(p, zmm_mask(n), v),
        fma: |a, b, c| _mm512_fmadd_ps(a, b, c), add: _mm512_add_ps);
}
