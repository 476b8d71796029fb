//! The built-in Markov source's figures are right, checked by properties rather than
//! copied numbers: for order 0 the entropy rate is the entropy of its one
//! distribution; for any seed `rate <= order-0 entropy <= ln 28`; the stationary
//! distribution satisfies `pi P = pi`; generated text is stationary from its first
//! byte and its empirical conditional entropy (plug-in, from counts) and its
//! negative log-likelihood under the chain both match `entropy_rate()`. Same seeds
//! give the same bytes, different seeds different bytes, contexts follow the text as
//! documented, and bad parameters are typed errors.

use approx::{abs_diff_eq, assert_abs_diff_eq};
use cllm::data::{
    default_corpus, symbol_index, DataError, MarkovSource, ALPHABET, DEFAULT_CORPUS_ALPHA,
    DEFAULT_CORPUS_BYTES, DEFAULT_CORPUS_ORDER, DEFAULT_CORPUS_SEED, N_SYMBOLS,
};
use proptest::prelude::*;

/// Entropy in nats, written out independently of the crate's helper.
fn h(p: &[f64]) -> f64 {
    p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum()
}

fn ln28() -> f64 {
    (N_SYMBOLS as f64).ln()
}

#[test]
fn order0_rate_is_the_entropy_of_its_distribution() {
    for (seed, alpha) in [(1, 0.15), (2, 0.5), (3, 3.0), (4, 0.01)] {
        let m = MarkovSource::new(seed, 0, alpha).expect("order 0");
        assert_eq!(m.n_contexts(), 1);
        let p = m.transition(0).expect("context 0");
        assert!(
            abs_diff_eq!(m.entropy_rate(), h(p), epsilon = 1e-12),
            "seed {seed}"
        );
        assert!(
            abs_diff_eq!(m.order0_entropy(), h(p), epsilon = 1e-12),
            "seed {seed}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn rate_is_at_most_order0_entropy_at_most_ln28(
        seed in any::<u64>(),
        order in 0usize..=2,
        alpha in 0.02f64..5.0,
    ) {
        let m = MarkovSource::new(seed, order, alpha).expect("source");
        prop_assert!(m.entropy_rate() > 0.0);
        prop_assert!(m.entropy_rate() <= m.order0_entropy() + 1e-12);
        prop_assert!(m.order0_entropy() <= ln28() + 1e-12);
        // order0_entropy is the entropy of q(c) = sum_s pi(s) p(c | s).
        let mut q = [0.0; N_SYMBOLS];
        for (s, w) in m.stationary().iter().enumerate() {
            for (qc, p) in q.iter_mut().zip(m.transition(s).expect("row")) {
                *qc += w * p;
            }
        }
        prop_assert!(abs_diff_eq!(m.order0_entropy(), h(&q), epsilon = 1e-12));
    }
}

#[test]
fn default_corpus_is_clearly_below_order0() {
    let m = MarkovSource::new(
        DEFAULT_CORPUS_SEED,
        DEFAULT_CORPUS_ORDER,
        DEFAULT_CORPUS_ALPHA,
    )
    .expect("default source");
    let (rate, h0) = (m.entropy_rate(), m.order0_entropy());
    assert!(rate < h0 - 0.5, "rate {rate}, order-0 {h0}");
    assert!(h0 <= ln28());

    let (bytes, r) = default_corpus().expect("default corpus");
    assert_eq!(bytes.len(), DEFAULT_CORPUS_BYTES);
    assert_eq!(r, rate);
    assert_eq!(bytes, m.generate(DEFAULT_CORPUS_BYTES, DEFAULT_CORPUS_SEED));
}

#[test]
fn transitions_are_positive_distributions() {
    for order in 0..=3 {
        let m = MarkovSource::new(11, order, 0.1).expect("source");
        assert_eq!(m.n_contexts(), N_SYMBOLS.pow(order as u32));
        for s in 0..m.n_contexts() {
            let row = m.transition(s).expect("row");
            assert_eq!(row.len(), N_SYMBOLS);
            assert!(row.iter().all(|&p| p > 0.0), "order {order} ctx {s}");
            assert_abs_diff_eq!(row.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        }
        assert!(m.transition(m.n_contexts()).is_none());
    }
}

#[test]
fn stationary_distribution_is_stationary() {
    for (order, seed) in [(1, 5), (2, 6), (3, 7)] {
        let m = MarkovSource::new(seed, order, 0.15).expect("source");
        let n = m.n_contexts();
        let pi = m.stationary();
        assert_eq!(pi.len(), n);
        assert!(pi.iter().all(|&x| x > 0.0));
        assert_abs_diff_eq!(pi.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        // (pi P)(t) = sum over (s, c) with (28 s + c) mod 28^k = t of pi(s) p(c | s).
        let mut next = vec![0.0; n];
        for (s, w) in pi.iter().enumerate() {
            for (c, p) in m.transition(s).expect("row").iter().enumerate() {
                next[(s * N_SYMBOLS + c) % n] += w * p;
            }
        }
        let l1: f64 = next.iter().zip(pi).map(|(a, b)| (a - b).abs()).sum();
        assert!(l1 < 1e-12, "order {order}: |pi P - pi|_1 = {l1:e}");
        // Entropy rate as the pi-weighted row entropy.
        let rate: f64 = (0..n)
            .map(|s| pi[s] * h(m.transition(s).expect("row")))
            .sum();
        assert_abs_diff_eq!(rate, m.entropy_rate(), epsilon = 1e-12);
    }
}

/// Generates `n` characters of the chain `(seed, order, 0.15)` and compares two
/// estimates with `entropy_rate()`:
///
/// * the mean negative log-likelihood of each character under the chain given its
///   previous `order` characters: unbiased (the text is stationary), so it must lie
///   within 5 standard errors (`sd / sqrt(n)`, about 0.0007 nats at 2M characters).
/// * the plug-in conditional entropy `sum_ctx (n_ctx / n) H(counts_ctx / n_ctx)`: biased
///   low, by about the Miller-Madow term `B = sum_ctx (k_ctx - 1) / (2 n)` (`k_ctx`
///   symbols seen after the context). We add `B` back and allow a further `B` plus 5
///   standard errors: the first-order term leaves out part of the bias for rarely
///   seen contexts (measured: about 0.6 B at order 3), so the tolerance is the
///   estimator's own bias scale, about 0.002 nats at order 2 and 0.013 at order 3
///   on 4M characters, while a wrong rate or a wrong generator is off by tenths.
fn check_empirical_entropy(order: usize, seed: u64, n: usize) {
    let m = MarkovSource::new(seed, order, 0.15).expect("source");
    let text = m.generate(n, seed + 100);
    let sym: Vec<usize> = text
        .iter()
        .map(|&b| symbol_index(b).expect("byte in the alphabet"))
        .collect();
    let n_ctx = N_SYMBOLS.pow(order as u32);
    let mut counts = vec![0u32; n_ctx * N_SYMBOLS];
    let (mut nll, mut nll_sq) = (0.0, 0.0);
    let mut ctx = sym[..order].iter().fold(0, |a, &c| a * N_SYMBOLS + c);
    for &c in &sym[order..] {
        counts[ctx * N_SYMBOLS + c] += 1;
        let l = -m.transition(ctx).expect("row")[c].ln();
        nll += l;
        nll_sq += l * l;
        ctx = (ctx * N_SYMBOLS + c) % n_ctx;
    }
    let total = (n - order) as f64;
    let rate = m.entropy_rate();
    nll /= total;
    let std_err = (nll_sq / total - nll * nll).sqrt() / total.sqrt();
    assert!(
        (nll - rate).abs() < 5.0 * std_err,
        "order {order}: NLL {nll} vs rate {rate} (std err {std_err})"
    );

    let (mut plug_in, mut bias) = (0.0, 0.0);
    for row in counts.chunks_exact(N_SYMBOLS) {
        let n_c: u32 = row.iter().sum();
        if n_c == 0 {
            continue;
        }
        let n_c = f64::from(n_c);
        let probs: Vec<f64> = row.iter().map(|&x| f64::from(x) / n_c).collect();
        plug_in += n_c / total * h(&probs);
        let seen = row.iter().filter(|&&x| x > 0).count();
        bias += (seen - 1) as f64 / (2.0 * total);
    }
    let corrected = plug_in + bias;
    let tol = bias + 5.0 * std_err;
    assert!(
        (corrected - rate).abs() < tol,
        "order {order}: plug-in {plug_in} + Miller-Madow {bias} vs rate {rate} (tol {tol})"
    );
    assert!(
        plug_in < rate + 5.0 * std_err,
        "plug-in must not exceed the rate"
    );
}

#[test]
fn empirical_entropy_matches_rate_order1() {
    check_empirical_entropy(1, 21, 2_000_000);
}

#[test]
fn empirical_entropy_matches_rate_order2() {
    check_empirical_entropy(2, 22, 2_000_000);
}

#[test]
fn empirical_entropy_matches_rate_order3() {
    check_empirical_entropy(3, 23, 4_000_000);
}

#[test]
fn text_is_stationary_from_its_first_byte() {
    // The first byte of many independent texts is distributed as the stationary
    // symbol distribution q; a fixed start context would give p(. | start) instead.
    let m = MarkovSource::new(31, 2, 0.15).expect("source");
    let mut q = [0.0; N_SYMBOLS];
    for (s, w) in m.stationary().iter().enumerate() {
        for (qc, p) in q.iter_mut().zip(m.transition(s).expect("row")) {
            *qc += w * p;
        }
    }
    let draws = 20_000u64;
    let mut counts = [0u64; N_SYMBOLS];
    for seed in 0..draws {
        let first = m.generate(1, seed)[0];
        counts[symbol_index(first).expect("alphabet")] += 1;
    }
    // Chi-square over symbols with expected count >= 5 (about 20 degrees of freedom
    // or fewer); 60 is beyond the 1e-5 quantile.
    let chi2: f64 = counts
        .iter()
        .zip(&q)
        .map(|(&o, &p)| (o as f64, p * draws as f64))
        .filter(|&(_, e)| e >= 5.0)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    assert!(chi2 < 60.0, "chi-square {chi2}");
}

#[test]
fn same_seeds_same_bytes_different_seeds_different_bytes() {
    let a = MarkovSource::new(3, 3, 0.2).expect("source");
    let b = MarkovSource::new(3, 3, 0.2).expect("source");
    let text = a.generate(10_000, 1);
    assert_eq!(text.len(), 10_000);
    assert!(text.iter().all(|c| ALPHABET.contains(c)));
    assert_eq!(text, b.generate(10_000, 1));
    assert_eq!(a.entropy_rate(), b.entropy_rate());
    // Another text seed, or another chain seed, changes the bytes.
    assert_ne!(text, a.generate(10_000, 2));
    let c = MarkovSource::new(4, 3, 0.2).expect("source");
    assert_ne!(text, c.generate(10_000, 1));
    assert_ne!(a.entropy_rate(), c.entropy_rate());
    // A prefix of a longer text is the shorter text.
    assert_eq!(&a.generate(20_000, 1)[..10_000], &text[..]);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(matches!(
        MarkovSource::new(1, 5, 0.1),
        Err(DataError::BadOrder { order: 5, .. })
    ));
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
        assert!(
            matches!(
                MarkovSource::new(1, 1, alpha),
                Err(DataError::BadAlpha { .. })
            ),
            "alpha {alpha}"
        );
    }
    // Extreme but valid concentrations still give positive distributions (a tiny
    // alpha may instead make the chain nearly decomposable: then a typed error).
    for alpha in [1e-6, 1e6] {
        match MarkovSource::new(1, 1, alpha) {
            Ok(m) => {
                assert!(m.entropy_rate().is_finite());
                for s in 0..m.n_contexts() {
                    let row = m.transition(s).expect("row");
                    assert!(row.iter().all(|&p| p > 0.0), "alpha {alpha}");
                }
            }
            Err(DataError::NoConvergence { .. }) if alpha < 1.0 => {}
            Err(e) => panic!("alpha {alpha}: {e}"),
        }
    }
}

#[test]
fn contexts_follow_the_text() {
    let m = MarkovSource::new(8, 3, 0.15).expect("source");
    assert_eq!(m.context_of(b"xabc"), Some(28 + 2)); // "abc" = (0, 1, 2) in base 28
    assert_eq!(m.context_of(b"ab"), None); // shorter than the order
    assert_eq!(m.context_of(b"a!c"), None); // outside the alphabet
    let text = m.generate(1000, 3);
    for i in 3..text.len() - 1 {
        let ctx = m.context_of(&text[..i]).expect("context");
        let sym = symbol_index(text[i]).expect("symbol");
        assert_eq!(
            m.next_context(ctx, sym),
            m.context_of(&text[..=i]).expect("next")
        );
    }
}

/// The letter text streamed in uneven pieces is the text `generate` returns at once.
#[test]
fn streamed_letters_equal_generated_letters() {
    let m = cllm::data::MarkovSource::new(3, 2, 0.3).unwrap();
    let whole = m.generate(10_000, 9);
    let mut stream = m.stream(9);
    let mut pieces = Vec::new();
    for len in [1usize, 7, 0, 993, 4096, 4903] {
        let mut buf = vec![0; len];
        stream.fill(&mut buf);
        pieces.extend(buf);
    }
    assert_eq!(pieces, whole);
}
