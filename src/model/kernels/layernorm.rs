//! Owns layer normalisation over the channel dimension ([`layernorm_forward`],
//! [`layernorm_backward`]). Must never normalise across rows (rows stay independent).

use crate::isa::kernel;

use super::{dot_rows, sum_rows};

/// Rows normalised together: their reductions' add chains are interleaved
/// ([`sum_rows`], [`dot_rows`]); one row's chains alone left the kernel latency-bound.
/// Every row is still computed exactly as alone (same operations, same order).
const GROUP: usize = 4;

/// The variance epsilon, as in GPT-2.
pub const EPS: f32 = 1e-5;

kernel! {
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
        debug_assert_eq!(out.len(), n * c);
        debug_assert!(mean.len() == n && rstd.len() == n);
        debug_assert_eq!(inp.len(), n * c);
        debug_assert!(weight.len() == c && bias.len() == c);
        if c == 0 {
            return;
        }
        let (weight, bias) = (&weight[..c], &bias[..c]);
        let (out, inp, mean, rstd) = (
            &mut out[..n * c],
            &inp[..n * c],
            &mut mean[..n],
            &mut rstd[..n],
        );
        let whole = n - n % GROUP;
        let (out_g, out_r) = out.split_at_mut(whole * c);
        let (inp_g, inp_r) = inp.split_at(whole * c);
        let (mean_g, mean_r) = mean.split_at_mut(whole);
        let (rstd_g, rstd_r) = rstd.split_at_mut(whole);
        let groups = out_g
            .chunks_exact_mut(GROUP * c)
            .zip(inp_g.chunks_exact(GROUP * c))
            .zip(
                mean_g
                    .chunks_exact_mut(GROUP)
                    .zip(rstd_g.chunks_exact_mut(GROUP)),
            );
        for ((o, x), (m, r)) in groups {
            forward_rows::<GROUP>(o, x, m, r, weight, bias, c);
        }
        let rest = out_r
            .chunks_exact_mut(c)
            .zip(inp_r.chunks_exact(c))
            .zip(mean_r.chunks_exact_mut(1).zip(rstd_r.chunks_exact_mut(1)));
        for ((o, x), (m, r)) in rest {
            forward_rows::<1>(o, x, m, r, weight, bias, c);
        }
    }
}

/// [`layernorm_forward`] of `R` rows (`o`, `x`: `R * c` floats; `m`, `r`: `R`).
#[inline(always)]
fn forward_rows<const R: usize>(
    o: &mut [f32],
    x: &[f32],
    m: &mut [f32],
    r: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    c: usize,
) {
    let xs: [&[f32]; R] = core::array::from_fn(|g| &x[g * c..(g + 1) * c]);
    let sums = sum_rows(xs);
    let means: [f32; R] = core::array::from_fn(|g| sums[g] / c as f32);
    // Centre into `o` first, so the variance is a plain dot product.
    for (g, og) in o.chunks_exact_mut(c).enumerate() {
        for (oi, &xi) in og.iter_mut().zip(xs[g]) {
            *oi = xi - means[g];
        }
    }
    let os: [&[f32]; R] = core::array::from_fn(|g| &o[g * c..(g + 1) * c]);
    let vars = dot_rows(os, os);
    for (g, og) in o.chunks_exact_mut(c).enumerate() {
        let var = vars[g] / c as f32;
        let rs = 1.0 / (var + EPS).sqrt();
        for ((oi, &w), &bi) in og.iter_mut().zip(weight).zip(bias) {
            *oi = *oi * rs * w + bi;
        }
        m[g] = means[g];
        r[g] = rs;
    }
}

kernel! {
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
        debug_assert_eq!(dinp.len(), n * c);
        debug_assert!(dweight.len() == c && dbias.len() == c && weight.len() == c);
        debug_assert!(dout.len() == n * c && inp.len() == n * c);
        debug_assert!(mean.len() == n && rstd.len() == n);
        if c == 0 {
            return;
        }
        let (dweight, dbias, weight) = (&mut dweight[..c], &mut dbias[..c], &weight[..c]);
        // Scratch for norm and dnorm of one group of rows (one allocation per call).
        let mut scratch = vec![0.0f32; 2 * GROUP * c];
        let (norm, dnorm) = scratch.split_at_mut(GROUP * c);
        let whole = n - n % GROUP;
        let mut i = 0;
        while i < n {
            let rows = i..if i < whole { i + GROUP } else { i + 1 };
            let at = rows.start * c..rows.end * c;
            let (di, g, x) = (&mut dinp[at.clone()], &dout[at.clone()], &inp[at]);
            let (m, r) = (&mean[rows.clone()], &rstd[rows.clone()]);
            let params = (&mut *dweight, &mut *dbias, weight);
            if rows.len() == GROUP {
                backward_rows::<GROUP>(di, params, g, x, m, r, norm, dnorm, c);
            } else {
                backward_rows::<1>(di, params, g, x, m, r, norm, dnorm, c);
            }
            i = rows.end;
        }
    }
}

/// [`layernorm_backward`] of `R` rows (`di`, `g`, `x`: `R * c` floats; `m`, `r`: `R`),
/// with scratch `norm`, `dnorm` (at least `R * c` floats each).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows<const R: usize>(
    di: &mut [f32],
    (dweight, dbias, weight): (&mut [f32], &mut [f32], &[f32]),
    g: &[f32],
    x: &[f32],
    m: &[f32],
    r: &[f32],
    norm: &mut [f32],
    dnorm: &mut [f32],
    c: usize,
) {
    let (norm, dnorm) = (&mut norm[..R * c], &mut dnorm[..R * c]);
    for row in 0..R {
        let at = row * c..(row + 1) * c;
        let (nr, dr) = (&mut norm[at.clone()], &mut dnorm[at.clone()]);
        let (xr, gr) = (&x[at.clone()], &g[at]);
        for ((nv, dn), ((&xi, &gi), &w)) in nr
            .iter_mut()
            .zip(dr.iter_mut())
            .zip(xr.iter().zip(gr).zip(weight))
        {
            *nv = (xi - m[row]) * r[row];
            *dn = w * gi;
        }
    }
    let ns: [&[f32]; R] = core::array::from_fn(|row| &norm[row * c..(row + 1) * c]);
    let ds: [&[f32]; R] = core::array::from_fn(|row| &dnorm[row * c..(row + 1) * c]);
    let sums = sum_rows(ds);
    let dots = dot_rows(ds, ns);
    let dnorm_mean: [f32; R] = core::array::from_fn(|row| sums[row] / c as f32);
    let dnorm_norm_mean: [f32; R] = core::array::from_fn(|row| dots[row] / c as f32);
    // Row by row, as alone: every element's chain of `dweight` and `dbias` takes the
    // rows in order.
    for row in 0..R {
        let at = row * c..(row + 1) * c;
        let (d, gr) = (&mut di[at.clone()], &g[at]);
        let (dm, dnm, rr) = (dnorm_mean[row], dnorm_norm_mean[row], r[row]);
        for (((d, &nv), &dn), ((dw, db), &gi)) in d
            .iter_mut()
            .zip(ns[row])
            .zip(ds[row])
            .zip(dweight.iter_mut().zip(dbias.iter_mut()).zip(gr))
        {
            *db += gi;
            *dw += nv * gi;
            *d += (dn - dm - nv * dnm) * rr;
        }
    }
}
