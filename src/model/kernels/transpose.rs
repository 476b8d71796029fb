//! Owns [`transpose`]: copying a strided `[rows, cols]` block into a dense
//! `[cols, rows]` buffer (attention's per-head `K^T` and `V^T`).
//! Must never compute anything: it only moves floats, so which path runs (8 x 8 AVX
//! register blocks on the AVX2 and AVX-512 paths, the plain loop on the portable one)
//! can never change a result.

/// `dst[c * rows + r] = src[r * src_rs + c]` for `r < rows`, `c < cols`.
///
/// # Panics
/// If `dst` is shorter than `rows * cols` or `src` shorter than the strided block.
pub fn transpose(dst: &mut [f32], src: &[f32], rows: usize, cols: usize, src_rs: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(dst.len() >= rows * cols, "transpose: destination too short");
    let last = (rows - 1)
        .checked_mul(src_rs)
        .and_then(|x| x.checked_add(cols));
    assert!(
        matches!(last, Some(end) if end <= src.len()),
        "transpose: source too short"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa::active() != crate::isa::Isa::Portable {
        // SAFETY: both slices were checked long enough for the shape just above, and
        // the AVX2 and AVX-512 paths are only active on a CPU with AVX2 (checked at
        // run time when they were chosen).
        unsafe { x86::transpose_avx2(dst, src, rows, cols, src_rs) };
        return;
    }
    plain(dst, src, 0..rows, 0..cols, rows, src_rs);
}

/// The plain loop over the rows `rs` and columns `cs` of the block (`rows` is the
/// destination's row length).
fn plain(
    dst: &mut [f32],
    src: &[f32],
    rs: core::ops::Range<usize>,
    cs: core::ops::Range<usize>,
    rows: usize,
    src_rs: usize,
) {
    for c in cs {
        for r in rs.clone() {
            dst[c * rows + r] = src[r * src_rs + c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::transpose`] in 8 x 8 register blocks, the ragged edges by the plain
    /// loop.
    ///
    /// # Safety
    /// `dst.len() >= rows * cols`, `(rows - 1) * src_rs + cols <= src.len()`, and the
    /// CPU supports AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_avx2(
        dst: &mut [f32],
        src: &[f32],
        rows: usize,
        cols: usize,
        src_rs: usize,
    ) {
        let (rows8, cols8) = (rows - rows % 8, cols - cols % 8);
        for r0 in (0..rows8).step_by(8) {
            for c0 in (0..cols8).step_by(8) {
                // SAFETY: rows r0..r0+8 <= rows and columns c0..c0+8 <= cols of the
                // source, and the destination rows c0..c0+8 at columns r0..r0+8, are
                // inside the slices (the caller's contract).
                unsafe {
                    let s = src.as_ptr().add(r0 * src_rs + c0);
                    let mut v = [_mm256_setzero_ps(); 8];
                    for (i, x) in v.iter_mut().enumerate() {
                        *x = _mm256_loadu_ps(s.add(i * src_rs));
                    }
                    let t = transpose8(v);
                    let d = dst.as_mut_ptr().add(c0 * rows + r0);
                    for (j, &x) in t.iter().enumerate() {
                        _mm256_storeu_ps(d.add(j * rows), x);
                    }
                }
            }
        }
        super::plain(dst, src, 0..rows8, cols8..cols, rows, src_rs);
        super::plain(dst, src, rows8..rows, 0..cols, rows, src_rs);
    }

    /// The 8 x 8 transpose of eight row registers.
    #[inline(always)]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        // SAFETY: register-only AVX operations, inlined into the AVX2 function above.
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape up to 19 x 19 (full blocks, ragged edges, both) with row strides at
    /// and above `cols`: each destination element is its source element.
    #[test]
    fn transpose_moves_every_element() {
        for rows in 0..20 {
            for cols in 0..20 {
                for extra in [0, 3] {
                    let src_rs = cols + extra;
                    let src: Vec<f32> = (0..rows * src_rs).map(|i| i as f32).collect();
                    let mut dst = vec![f32::NAN; rows * cols];
                    transpose(&mut dst, &src, rows, cols, src_rs);
                    for r in 0..rows {
                        for c in 0..cols {
                            assert_eq!(dst[c * rows + r], src[r * src_rs + c], "{rows}x{cols}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "source too short")]
    fn transpose_rejects_a_short_source() {
        let mut dst = [0.0; 16];
        transpose(&mut dst, &[0.0; 15], 4, 4, 4);
    }
}
