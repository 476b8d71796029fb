//! Owns layer normalisation over the channel dimension ([`layernorm_forward`],
//! [`layernorm_backward`]). Must never normalise across rows (rows stay independent).

use super::{dot, sum};

/// The variance epsilon, as in GPT-2.
pub const EPS: f32 = 1e-5;

/// Per row `i`: `mean[i] = avg(x)`, `rstd[i] = 1 / sqrt(avg((x - mean)^2) + 1e-5)`,
/// `out[i, :] = (x - mean) * rstd * weight + bias`, where `x = inp[i, :]`; `mean` and
/// `rstd` are saved for [`layernorm_backward`].
///
/// Shapes: `out [n, c]`, `mean [n]`, `rstd [n]`, `inp [n, c]`, `weight [c]`,
/// `bias [c]`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
) {
    dispatch!(layernorm_forward_impl(
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        weight: &[f32],
        bias: &[f32],
        n: usize,
        c: usize,
    ))
}

/// Body of [`layernorm_forward`] (inlined into the AVX2 trampoline of `dispatch!`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layernorm_forward_impl(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
) {
    debug_assert_eq!(out.len(), n * c);
    debug_assert!(mean.len() == n && rstd.len() == n);
    debug_assert_eq!(inp.len(), n * c);
    debug_assert!(weight.len() == c && bias.len() == c);
    let (weight, bias) = (&weight[..c], &bias[..c]);
    let rows = out
        .chunks_exact_mut(c)
        .zip(inp.chunks_exact(c))
        .zip(mean.iter_mut().zip(rstd.iter_mut()))
        .take(n);
    for ((o, x), (m_out, r_out)) in rows {
        let m = sum(x) / c as f32;
        // Centre into `o` first, so the variance is a plain dot product.
        for (oi, &xi) in o.iter_mut().zip(x) {
            *oi = xi - m;
        }
        let var = dot(o, o) / c as f32;
        let r = 1.0 / (var + EPS).sqrt();
        for ((oi, &w), &bi) in o.iter_mut().zip(weight).zip(bias) {
            *oi = *oi * r * w + bi;
        }
        *m_out = m;
        *r_out = r;
    }
}

/// Backward of [`layernorm_forward`], accumulating. Per row, with
/// `norm = (x - mean) * rstd` and `dnorm = weight * dout`:
/// `dbias += dout`, `dweight += norm * dout`,
/// `dinp += rstd * (dnorm - avg(dnorm) - norm * avg(dnorm * norm))`.
///
/// Shapes: `dinp [n, c]`, `dweight [c]`, `dbias [c]`, `dout [n, c]`, `inp [n, c]`,
/// `weight [c]`, `mean [n]`, `rstd [n]`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    dispatch!(layernorm_backward_impl(
        dinp: &mut [f32],
        dweight: &mut [f32],
        dbias: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        weight: &[f32],
        mean: &[f32],
        rstd: &[f32],
        n: usize,
        c: usize,
    ))
}

/// Body of [`layernorm_backward`] (inlined into the AVX2 trampoline of `dispatch!`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layernorm_backward_impl(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    debug_assert_eq!(dinp.len(), n * c);
    debug_assert!(dweight.len() == c && dbias.len() == c && weight.len() == c);
    debug_assert!(dout.len() == n * c && inp.len() == n * c);
    debug_assert!(mean.len() == n && rstd.len() == n);
    let (dweight, dbias, weight) = (&mut dweight[..c], &mut dbias[..c], &weight[..c]);
    // Per-row scratch for norm and dnorm (c floats each; one allocation per call).
    let mut norm = vec![0.0f32; c];
    let mut dnorm = vec![0.0f32; c];
    let rows = dinp
        .chunks_exact_mut(c)
        .zip(dout.chunks_exact(c))
        .zip(inp.chunks_exact(c))
        .zip(mean.iter().zip(rstd))
        .take(n);
    for (((di, g), x), (&m, &r)) in rows {
        for ((nv, dn), ((&xi, &gi), &w)) in norm
            .iter_mut()
            .zip(dnorm.iter_mut())
            .zip(x.iter().zip(g).zip(weight))
        {
            *nv = (xi - m) * r;
            *dn = w * gi;
        }
        let dnorm_mean = sum(&dnorm) / c as f32;
        let dnorm_norm_mean = dot(&dnorm, &norm) / c as f32;
        for (((d, &nv), &dn), ((dw, db), &gi)) in di
            .iter_mut()
            .zip(&norm)
            .zip(&dnorm)
            .zip(dweight.iter_mut().zip(dbias.iter_mut()).zip(g))
        {
            *db += gi;
            *dw += nv * gi;
            *d += (dn - dnorm_mean - nv * dnorm_norm_mean) * r;
        }
    }
}
