//! The toy hooks the step-protocol model checks share (`tests/loom_step.rs`,
//! `tests/shuttle_step.rs`): tiny, deterministic and order-sensitive, so a stale
//! weight, a different reduction or decision order, or a double update changes bits.
//! Must never use the library's reduction or optimizer (the expected values are
//! computed here, independently).
#![allow(dead_code)]

use core::ops::Range;

/// A deterministic value per (step, slot, element): random sign and mantissa, an
/// exponent in about 2^-8..2^8, so a different order or operand changes the bits.
pub fn value(step: usize, slot: usize, i: usize) -> f32 {
    let mut z = (step as u64) << 40 ^ (slot as u64) << 20 ^ i as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mantissa = 1.0 + (z & 0xff_ffff) as f32 / (1u32 << 24) as f32;
    let exponent = ((z >> 24) % 17) as i32 - 8;
    let sign = if z >> 63 == 0 { 1.0 } else { -1.0 };
    sign * mantissa * 2f32.powi(exponent)
}

pub fn initial_weights(len: usize) -> Vec<f32> {
    (0..len).map(|i| value(1000, 7, i)).collect()
}

/// One job: which step and slot it fills.
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    pub step: usize,
    pub slot: usize,
}

/// The gradient of one job: reads every weight, so a stale weight shows.
pub fn job_gradient(w: &[f32], p: Payload, grad: &mut [f32]) -> f32 {
    let k = 0.5 + 0.25 * p.slot as f32 + 0.125 * p.step as f32;
    for (i, (g, &x)) in grad.iter_mut().zip(w).enumerate() {
        *g = x * k + value(p.step, p.slot, i);
    }
    w[p.slot] * k + w[w.len() - 1 - p.slot]
}

/// The documented reduction order, written independently of the library:
/// tree(x) = x[0] for one input, else tree(x[..n/2]) + tree(x[n/2..]).
pub fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [] => unreachable!("no inputs"),
        [one] => *one,
        _ => {
            let mid = values.len() / 2;
            tree_sum(&values[..mid]) + tree_sum(&values[mid..])
        }
    }
}

/// A part's summary: its f64 sum in element order and its range.
pub fn part_summary(range: Range<usize>, grad: &[f32], out: &mut Vec<f64>) {
    out.clear();
    out.push(grad.iter().map(|&g| g as f64).sum());
    out.push(range.start as f64);
    out.push(range.end as f64);
}

/// The update factor and the exact inputs it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub step: usize,
    pub c: f32,
    pub inputs: Vec<u64>,
}

/// A pure, order-sensitive function of the losses (slot order) and summaries (part
/// order).
pub fn decision(step: usize, losses: &[f32], summaries: &[&Vec<f64>]) -> Decision {
    let mut acc = 0.0f64;
    let mut inputs = Vec::new();
    for (m, &l) in losses.iter().enumerate() {
        acc += (m + 1) as f64 * l as f64;
        inputs.push(l.to_bits() as u64);
    }
    for (p, s) in summaries.iter().enumerate() {
        acc += (p + 2) as f64 * s[0] + 1e-3 * (s[1] + 3.0 * s[2]);
        inputs.extend(s.iter().map(|x| x.to_bits()));
    }
    Decision {
        step,
        c: (1e-3 * (1.0 + acc.abs().fract())) as f32,
        inputs,
    }
}

pub fn part_update(c: f32, weights: &mut [f32], grad: &[f32], aux: &mut [f32]) {
    for ((w, a), &g) in weights.iter_mut().zip(aux.iter_mut()).zip(grad) {
        *w -= c * g;
        *a += g;
    }
}
