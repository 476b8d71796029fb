//! GPT-2 kernel throughput at training shape S (2 layers, c = 128, 4 heads, t = 64,
//! b = 16, vocab 256: n = 1024 rows), single-threaded.
//!
//! * `matmul/*`: every matmul of a step, forward and backward, through the public
//!   kernels (throughput in FLOP, so criterion's `elem/s` reads as FLOP/s), against a
//!   plain vectorisable `i-k-j` loop (`plain_fwd`).
//! * `ops/*`: the other kernels at shape S, to see where a step's time goes.
//! * `peak/*`: the core's single-precision FMA peak on each vector unit (twelve
//!   independent chains of register FMAs, no memory traffic), and `gemm_m/*`: every
//!   product of a training step at shape M (`[1024 rows] x 256`: forward, input
//!   gradient through a transposed weight, weight gradient through a transposed input)
//!   on each instruction-set path with SIMD (the portable path runs FMAs through libm and
//!   is left out), so the gemm's fraction of peak is read from one run: divide a
//!   `gemm_m` rate by the `peak` rate of the same ISA.
//!
//! The route was chosen against `matrixmultiply` (sgemm, no threading) and `gemm`
//! (`Parallelism::None`) in an out-of-tree harness on the same shapes: the crate's own
//! engine matched `gemm` and was about 3x `matrixmultiply`, while guaranteeing a
//! per-element summation order (see `cllm::model::kernels::gemm`). Those crates are
//! not dependencies, so that comparison is not repeated here.
//!
//! Run: `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 2`.

use cllm::isa::Isa;
use cllm::model::kernels::gemm::{gemm_on, Init};
use cllm::model::kernels::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const N: usize = 1024;
const C: usize = 128;
const T: usize = 64;
const B: usize = 16;
const NH: usize = 4;
const V: usize = 256;

/// Deterministic data in [-0.5, 0.5).
fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// `out[n, oc] = inp[n, ic] @ w[ic, oc]`, the obvious vectorisable loop.
fn plain_matmul(out: &mut [f32], inp: &[f32], w: &[f32], n: usize, ic: usize, oc: usize) {
    for i in 0..n {
        let row = &mut out[i * oc..(i + 1) * oc];
        row.fill(0.0);
        for k in 0..ic {
            let a = inp[i * ic + k];
            for (o, &x) in row.iter_mut().zip(&w[k * oc..(k + 1) * oc]) {
                *o += a * x;
            }
        }
    }
}

fn matmuls(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    // (name, ic, oc): attention qkv, attention proj, mlp fc, mlp proj.
    for (name, ic, oc) in [
        ("qkv", C, 3 * C),
        ("attproj", C, C),
        ("fc", C, 4 * C),
        ("fcproj", 4 * C, C),
    ] {
        let inp = data(N * ic, 1);
        let w = data(ic * oc, 2);
        let bias = data(oc, 3);
        let dout = data(N * oc, 4);
        let mut out = vec![0.0; N * oc];
        let (mut dinp, mut dw, mut db) = (vec![0.0; N * ic], vec![0.0; ic * oc], vec![0.0; oc]);
        let flops = 2 * (N * ic * oc) as u64;
        let id = format!("{N}x{ic}x{oc}");
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new(format!("{name}_fwd"), &id), |bch| {
            bch.iter(|| matmul_forward(&mut out, &inp, &w, Some(&bias), N, ic, oc))
        });
        group.bench_function(BenchmarkId::new(format!("{name}_plain_fwd"), &id), |bch| {
            bch.iter(|| plain_matmul(&mut out, &inp, &w, N, ic, oc))
        });
        group.throughput(Throughput::Elements(2 * flops));
        group.bench_function(BenchmarkId::new(format!("{name}_bwd"), &id), |bch| {
            bch.iter(|| {
                matmul_backward(
                    &mut dinp,
                    &mut dw,
                    Some(&mut db),
                    &dout,
                    &inp,
                    &w,
                    N,
                    ic,
                    oc,
                )
            })
        });
    }

    let inp = data(N * C, 5);
    let wte = data(V * C, 6);
    let dlogits = data(N * V, 7);
    let mut logits = vec![0.0; N * V];
    let (mut dinp, mut dwte) = (vec![0.0; N * C], vec![0.0; V * C]);
    let flops = 2 * (N * C * V) as u64;
    let id = format!("{N}x{C}x{V}");
    group.throughput(Throughput::Elements(flops));
    group.bench_function(BenchmarkId::new("lm_head_fwd", &id), |bch| {
        bch.iter(|| lm_head_forward(&mut logits, &inp, &wte, N, C, V))
    });
    group.throughput(Throughput::Elements(2 * flops));
    group.bench_function(BenchmarkId::new("lm_head_bwd", &id), |bch| {
        bch.iter(|| lm_head_backward(&mut dinp, &mut dwte, &dlogits, &inp, &wte, N, C, V))
    });

    group.finish();
}

fn ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("ops");
    let tokens: Vec<u32> = (0..N as u32).map(|i| (i * 37) % V as u32).collect();
    let wte = data(V * C, 10);
    let wpe = data(T * C, 11);
    let mut x = vec![0.0; N * C];
    let (mut dwte, mut dwpe) = (vec![0.0; V * C], vec![0.0; T * C]);
    group.bench_function("encoder_fwd", |bch| {
        bch.iter(|| encoder_forward(&mut x, &tokens, &wte, &wpe, B, T, C))
    });
    group.bench_function("encoder_bwd", |bch| {
        bch.iter(|| encoder_backward(&mut dwte, &mut dwpe, &x, &tokens, B, T, C))
    });

    let inp = data(N * C, 12);
    let (w, bias) = (data(C, 13), data(C, 14));
    let (mut mean, mut rstd) = (vec![0.0; N], vec![0.0; N]);
    let mut out = vec![0.0; N * C];
    let (mut dinp, mut dw, mut db) = (vec![0.0; N * C], vec![0.0; C], vec![0.0; C]);
    group.bench_function("layernorm_fwd", |bch| {
        bch.iter(|| layernorm_forward(&mut out, &mut mean, &mut rstd, &inp, &w, &bias, N, C))
    });
    group.bench_function("layernorm_bwd", |bch| {
        bch.iter(|| {
            layernorm_backward(
                &mut dinp, &mut dw, &mut db, &out, &inp, &w, &mean, &rstd, N, C,
            )
        })
    });

    let qkv = data(N * 3 * C, 15);
    let mut att = vec![0.0; B * NH * T * T];
    let mut scratch = vec![0.0; B * NH * T * T];
    let mut dqkv = vec![0.0; N * 3 * C];
    group.bench_function("attention_fwd", |bch| {
        bch.iter(|| attention_forward(&mut out, &mut att, &qkv, B, T, C, NH))
    });
    group.bench_function("attention_bwd", |bch| {
        bch.iter(|| attention_backward(&mut dqkv, &mut scratch, &inp, &qkv, &att, B, T, C, NH))
    });

    let h = data(N * 4 * C, 16);
    let mut hout = vec![0.0; N * 4 * C];
    let mut hs = vec![0.0; N * 4 * C];
    let mut dh = vec![0.0; N * 4 * C];
    group.bench_function("gelu_fwd", |bch| {
        bch.iter(|| gelu_forward(&mut hout, &mut hs, &h))
    });
    group.bench_function("gelu_bwd", |bch| {
        bch.iter(|| gelu_backward(&mut dh, &h, &hs, &hout))
    });

    let (ra, rb) = (data(N * C, 17), data(N * C, 18));
    let (mut da, mut dbb) = (vec![0.0; N * C], vec![0.0; N * C]);
    group.bench_function("residual_fwd", |bch| {
        bch.iter(|| residual_forward(&mut out, &ra, &rb))
    });
    group.bench_function("residual_bwd", |bch| {
        bch.iter(|| residual_backward(&mut da, &mut dbb, &ra))
    });

    let logits = data(N * V, 19);
    let targets: Vec<u32> = (0..N as u32).map(|i| (i * 11) % V as u32).collect();
    let mut work = logits.clone();
    let mut losses = vec![0.0; N];
    group.bench_function("crossentropy_fwd_bwd", |bch| {
        bch.iter(|| {
            work.copy_from_slice(&logits);
            crossentropy_forward_backward(&mut work, &mut losses, &targets, N, V, 1.0 / N as f32);
            black_box(&work);
        })
    });
    group.bench_function("crossentropy_fwd", |bch| {
        bch.iter(|| crossentropy_forward(&logits, &mut losses, &targets, N, V))
    });
    group.finish();
}

/// Twelve independent FMA chains per vector width, `iters` rounds: the rate is the
/// core's peak (the dependent chains are long enough to hide the FMA latency).
#[cfg(target_arch = "x86_64")]
mod fma_peak {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }
}

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("peak");
    const ITERS: usize = 200_000;
    #[cfg(target_arch = "x86_64")]
    {
        if Isa::Avx512.supported() {
            group.throughput(Throughput::Elements((ITERS * 12 * 16 * 2) as u64));
            // SAFETY: AVX-512F support was just checked.
            group.bench_function("avx512_fma", |b| {
                b.iter(|| unsafe { fma_peak::avx512(black_box(ITERS)) })
            });
        } else {
            println!("skipped: no avx512f (peak/avx512_fma)");
        }
        if Isa::Avx2.supported() {
            group.throughput(Throughput::Elements((ITERS * 12 * 8 * 2) as u64));
            // SAFETY: AVX2 and FMA support was just checked.
            group.bench_function("avx2_fma", |b| {
                b.iter(|| unsafe { fma_peak::avx2(black_box(ITERS)) })
            });
        }
    }
    group.finish();
}

fn gemm_m(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_m");
    const ROWS: usize = 8 * 128;
    const W: usize = 256;
    for isa in Isa::available() {
        if isa == Isa::Portable {
            continue;
        }
        // (name, ic, oc): attention qkv, attention proj, mlp fc, mlp proj.
        for (name, ic, oc) in [
            ("qkv", W, 3 * W),
            ("attproj", W, W),
            ("fc", W, 4 * W),
            ("fcproj", 4 * W, W),
        ] {
            let inp = data(ROWS * ic, 1);
            let w = data(ic * oc, 2);
            let dout = data(ROWS * oc, 3);
            let mut out = vec![0.0; ROWS * oc];
            let mut dinp = vec![0.0; ROWS * ic];
            let mut dw = vec![0.0; ic * oc];
            group.throughput(Throughput::Elements(2 * (ROWS * ic * oc) as u64));
            let id = |kind: &str| {
                BenchmarkId::new(
                    format!("{}/{name}_{kind}", isa.name()),
                    format!("{ROWS}x{ic}x{oc}"),
                )
            };
            group.bench_function(id("fwd"), |b| {
                b.iter(|| {
                    gemm_on(
                        isa,
                        ROWS,
                        oc,
                        ic,
                        &inp,
                        ic,
                        1,
                        &w,
                        oc,
                        1,
                        &mut out,
                        oc,
                        Init::Zero,
                    )
                })
            });
            group.bench_function(id("dinp"), |b| {
                b.iter(|| {
                    gemm_on(
                        isa,
                        ROWS,
                        ic,
                        oc,
                        &dout,
                        oc,
                        1,
                        &w,
                        1,
                        oc,
                        &mut dinp,
                        ic,
                        Init::Zero,
                    )
                })
            });
            group.bench_function(id("dweight"), |b| {
                b.iter(|| {
                    gemm_on(
                        isa,
                        ic,
                        oc,
                        ROWS,
                        &inp,
                        1,
                        ic,
                        &dout,
                        oc,
                        1,
                        &mut dw,
                        oc,
                        Init::Zero,
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, peak, gemm_m, matmuls, ops);
criterion_main!(benches);
