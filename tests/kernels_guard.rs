//! Proves that no kernel reads or writes past a buffer's end on any instruction-set
//! path: every operand is placed so that its last float is the last one before an
//! unmapped guard page, and the kernels run on shapes whose rows end in ragged
//! (masked) tiles. A read or write of even one float past the end is a segmentation
//! fault, which fails this test binary. Unix only (`mmap`).
//! Must never touch: the kernels' internals (public entry points only).

#![cfg(unix)]

use cllm::isa::{self, Isa};
use cllm::model::kernels::gemm::{gemm_on, gemm_then_add_on, Init};
use cllm::model::kernels::*;

/// A buffer of `len` floats whose end touches an inaccessible page.
struct Guarded {
    base: *mut libc::c_void,
    map_len: usize,
    ptr: *mut f32,
    len: usize,
}

impl Guarded {
    fn new(values: &[f32]) -> Guarded {
        let page = 4096usize;
        let len = values.len();
        let data_pages = (len * 4).div_ceil(page).max(1);
        let map_len = (data_pages + 1) * page;
        // SAFETY: an anonymous private mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap failed");
        // SAFETY: the last page lies inside the mapping just made.
        let guard = unsafe { base.cast::<u8>().add(data_pages * page) };
        // SAFETY: `guard` is page-aligned and inside the mapping.
        let rc = unsafe { libc::mprotect(guard.cast(), page, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect failed");
        // SAFETY: `len` floats end exactly at `guard`, inside the readable part of the
        // mapping (4-byte aligned since the page is).
        let ptr = unsafe { guard.cast::<f32>().sub(len) };
        // SAFETY: the `len` floats at `ptr` are mapped, writable and not aliased.
        unsafe { core::slice::from_raw_parts_mut(ptr, len) }.copy_from_slice(values);
        Guarded {
            base,
            map_len,
            ptr,
            len,
        }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `ptr..ptr + len` is mapped and initialised (see `new`); `&self`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as `as_slice`, and `&mut self` makes it unaliased.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice outlives `self`.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// gemm with every operand (A, B, C, bias, the added matrix) ending at a guard page,
/// for column counts that leave every possible ragged tile width on the 16-, 8- and
/// portable 8-lane paths, row counts that leave every remainder height, and both B
/// layouts.
#[test]
fn gemm_never_touches_past_an_operand() {
    for isa in Isa::available() {
        for n in (1..=40).chain([47, 63, 255, 257, 300]) {
            for &m in &[1usize, 5, 13, 50] {
                for &k in &[1usize, 7, 260] {
                    for transposed_b in [false, true] {
                        let a = Guarded::new(&data(m * k, 1));
                        let b = Guarded::new(&data(k * n, 2));
                        let bias = Guarded::new(&data(n, 3));
                        let add = Guarded::new(&data(m * n, 4));
                        let mut c = Guarded::new(&data(m * n, 5));
                        let (b_rs, b_cs) = if transposed_b { (1, k) } else { (n, 1) };
                        let (a, b) = (a.as_slice(), b.as_slice());
                        // A read along rows, then down its columns (inp^T, packed).
                        for (a_rs, a_cs) in [(k, 1), (1, m)] {
                            let c = c.as_mut_slice();
                            let bias = Init::Bias(bias.as_slice());
                            gemm_on(isa, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, n, bias);
                            let (acc, add) = (Init::Accumulate, add.as_slice());
                            gemm_then_add_on(
                                isa, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, n, acc, add,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The row kernels with their last row ending at a guard page, on every path.
#[test]
fn row_kernels_never_touch_past_their_buffers() {
    for isa in Isa::available() {
        isa::scoped(isa, || {
            for c in (1..=40).chain([63, 65, 129]) {
                let n = 3;
                let inp = Guarded::new(&data(n * c, 1));
                let w = Guarded::new(&data(c, 2));
                let bias = Guarded::new(&data(c, 3));
                let mut out = Guarded::new(&vec![0.0; n * c]);
                let mut mean = Guarded::new(&vec![0.0; n]);
                let mut rstd = Guarded::new(&vec![0.0; n]);
                layernorm_forward(
                    out.as_mut_slice(),
                    mean.as_mut_slice(),
                    rstd.as_mut_slice(),
                    inp.as_slice(),
                    w.as_slice(),
                    bias.as_slice(),
                    n,
                    c,
                );
                let mut s = Guarded::new(&vec![0.0; n * c]);
                gelu_forward(out.as_mut_slice(), s.as_mut_slice(), inp.as_slice());
                let mut logits = Guarded::new(&data(n * c, 4));
                let mut losses = Guarded::new(&vec![0.0; n]);
                let targets = vec![0u32; n];
                crossentropy_forward_backward(
                    logits.as_mut_slice(),
                    losses.as_mut_slice(),
                    &targets,
                    n,
                    c,
                    1.0,
                );
            }
        })
        .expect("available paths run");
    }
}
