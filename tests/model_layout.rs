//! Proves the bookkeeping around cllm's GPT-2 (the numbers themselves are proved in
//! `model_reference.rs`): the flat parameter layout has exactly the Hugging Face
//! GPT-2 names, shapes and order, contiguously, totalling `n_params` (124,439,808 for
//! GPT-2 small) with weight decay flags on the 2-D tensors only; configs and
//! contexts are validated with typed errors naming the bad value; the passes refuse
//! bad tokens, targets and lengths with an error (never a panic) and stay usable;
//! the gradient buffer is fully overwritten and every result is bitwise
//! reproducible; `forward_loss` gives `forward_backward`'s loss bit for bit; and the
//! seeded initialization is deterministic with GPT-2's statistics.
//! Must never touch: the kernels' internals or any other module's tests.

use cllm::data::Rng;
use cllm::model::{
    forward_backward, forward_loss, init_params, next_token_logits, try_init_params, GptConfig,
    ModelError, ParamLayout, TrainingContext, MAX_PARAMS,
};

fn cfg(
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    vocab_size: usize,
) -> GptConfig {
    GptConfig {
        n_layer,
        n_head,
        n_embd,
        n_positions,
        vocab_size,
    }
}

/// Shape S of the brief: 2 layers, width 128, 4 heads, 64 positions, 256 tokens.
fn shape_s() -> GptConfig {
    cfg(2, 4, 128, 64, 256)
}

/// The expected (name, shape) list, written out from the Hugging Face GPT-2 model.
fn expected_tensors(c: &GptConfig) -> Vec<(String, Vec<usize>)> {
    let e = c.n_embd;
    let mut v = vec![
        ("wte.weight".to_string(), vec![c.vocab_size, e]),
        ("wpe.weight".to_string(), vec![c.n_positions, e]),
    ];
    for i in 0..c.n_layer {
        let block: [(&str, Vec<usize>); 12] = [
            ("ln_1.weight", vec![e]),
            ("ln_1.bias", vec![e]),
            ("attn.c_attn.weight", vec![e, 3 * e]),
            ("attn.c_attn.bias", vec![3 * e]),
            ("attn.c_proj.weight", vec![e, e]),
            ("attn.c_proj.bias", vec![e]),
            ("ln_2.weight", vec![e]),
            ("ln_2.bias", vec![e]),
            ("mlp.c_fc.weight", vec![e, 4 * e]),
            ("mlp.c_fc.bias", vec![4 * e]),
            ("mlp.c_proj.weight", vec![4 * e, e]),
            ("mlp.c_proj.bias", vec![e]),
        ];
        for (name, shape) in block {
            v.push((format!("h.{i}.{name}"), shape));
        }
    }
    v.push(("ln_f.weight".to_string(), vec![e]));
    v.push(("ln_f.bias".to_string(), vec![e]));
    v
}

#[test]
fn layout_has_hf_names_shapes_and_contiguous_offsets() {
    for c in [
        cfg(1, 1, 1, 1, 1),
        cfg(3, 2, 6, 5, 7),
        shape_s(),
        cfg(12, 12, 768, 1024, 50257),
    ] {
        let layout = ParamLayout::new(&c);
        let want = expected_tensors(&c);
        assert_eq!(layout.tensors().len(), want.len(), "{c:?}");
        let mut offset = 0;
        for (t, (name, shape)) in layout.tensors().iter().zip(&want) {
            assert_eq!(&t.name, name);
            assert_eq!(&t.shape, shape, "{name}");
            assert_eq!(t.offset, offset, "{name} is not contiguous");
            assert_eq!(t.numel(), shape.iter().product::<usize>());
            assert_eq!(t.range(), offset..offset + t.numel());
            // Weight decay exactly on the matrices: wte, wpe and the Conv1D weights.
            let matrix = name.starts_with("wte")
                || name.starts_with("wpe")
                || name.ends_with("c_attn.weight")
                || name.ends_with("c_proj.weight")
                || name.ends_with("c_fc.weight");
            assert_eq!(t.is_matrix(), matrix, "{name}");
            assert_eq!(layout.get(name), Some(t));
            offset += t.numel();
        }
        assert_eq!(layout.len(), offset);
        assert_eq!(c.n_params(), offset);
        assert!(!layout.is_empty());
        assert!(layout.get("transformer.wte.weight").is_none());
        assert!(layout
            .get(&format!("h.{}.ln_1.weight", c.n_layer))
            .is_none());
    }
    // GPT-2 small (tied head) has 124,439,808 parameters.
    assert_eq!(cfg(12, 12, 768, 1024, 50257).n_params(), 124_439_808);
}

#[test]
fn config_validation_names_the_offending_value() {
    let good = cfg(2, 4, 128, 64, 256);
    assert_eq!(good.validate(), Ok(()));
    let zeroed: [(&str, GptConfig); 5] = [
        ("n_layer", GptConfig { n_layer: 0, ..good }),
        ("n_head", GptConfig { n_head: 0, ..good }),
        ("n_embd", GptConfig { n_embd: 0, ..good }),
        (
            "n_positions",
            GptConfig {
                n_positions: 0,
                ..good
            },
        ),
        (
            "vocab_size",
            GptConfig {
                vocab_size: 0,
                ..good
            },
        ),
    ];
    for (field, c) in zeroed {
        let err = c.validate().unwrap_err();
        assert_eq!(err, ModelError::Zero { field });
        let msg = err.to_string();
        assert!(msg.contains(field) && !msg.contains('\n'), "{msg}");
    }
    let err = GptConfig { n_head: 3, ..good }.validate().unwrap_err();
    assert_eq!(
        err,
        ModelError::HeadsDoNotDivide {
            n_embd: 128,
            n_head: 3
        }
    );
    assert!(err.to_string().contains("128") && err.to_string().contains('3'));

    // Just over the limit: 2^31 + something parameters.
    let big = cfg(1, 1, 1 << 16, 1, 1 << 15);
    let n = big.n_params();
    assert!(n > MAX_PARAMS);
    let err = big.validate().unwrap_err();
    assert_eq!(
        err,
        ModelError::TooManyParams {
            n_params: Some(n),
            max: MAX_PARAMS
        }
    );
    assert!(err.to_string().contains(&n.to_string()));
    // Overflowing usize: reported, not wrapped.
    let huge = cfg(usize::MAX, 1, 1 << 20, 1, 1);
    assert_eq!(huge.n_params(), usize::MAX);
    assert_eq!(
        huge.validate(),
        Err(ModelError::TooManyParams {
            n_params: None,
            max: MAX_PARAMS
        })
    );
    // A config just at the limit of a sane size is fine (not allocated here).
    assert_eq!(cfg(12, 12, 768, 1024, 50257).validate(), Ok(()));
}

#[test]
fn config_roundtrips_through_json() {
    let c = shape_s();
    let json = serde_json::to_string(&c).unwrap();
    let back: GptConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert!(json.contains("\"n_embd\":128"), "{json}");
}

#[test]
fn context_validates_its_shape_and_reports_its_memory() {
    let c = shape_s();
    assert_eq!(
        TrainingContext::new(&c, 0, 8).unwrap_err(),
        ModelError::Zero { field: "batch" }
    );
    assert_eq!(
        TrainingContext::new(&c, 1, 0).unwrap_err(),
        ModelError::Zero { field: "seq" }
    );
    assert_eq!(
        TrainingContext::new(&c, 1, 65).unwrap_err(),
        ModelError::SequenceTooLong {
            seq: 65,
            max: 64,
            limit: "n_positions"
        }
    );
    assert_eq!(
        TrainingContext::new(&GptConfig { n_head: 5, ..c }, 1, 8).unwrap_err(),
        ModelError::HeadsDoNotDivide {
            n_embd: 128,
            n_head: 5
        }
    );
    // A size that cannot be counted is an error, not an overflow or an abort.
    assert_eq!(
        TrainingContext::new(&c, usize::MAX / 2, 64).unwrap_err(),
        ModelError::OutOfMemory { bytes: None }
    );

    // Shape S at batch 16, seq 64: per position, each block holds 16C + 4 + NH*T
    // floats and the rest 16C + 3 + V + NH*T (see the context's module doc).
    let ctx = TrainingContext::new(&c, 16, 64).unwrap();
    assert_eq!((ctx.batch(), ctx.seq()), (16, 64));
    assert_eq!(ctx.config(), &c);
    assert_eq!(ctx.layout().len(), c.n_params());
    let (e, nh, t, v, l) = (128, 4, 64, 256, 2);
    let per_position = l * (16 * e + 4 + nh * t) + 16 * e + 3 + v + nh * t;
    assert_eq!(ctx.bytes(), 16 * 64 * per_position * 4);
    assert_eq!(ctx.bytes(), 29_405_184); // 28.0 MiB
}

/// A small model with non-trivial parameters and one micro-batch for it.
struct Case {
    cfg: GptConfig,
    params: Vec<f32>,
    tokens: Vec<u32>,
    targets: Vec<u32>,
    batch: usize,
    seq: usize,
}

fn case(seed: u64) -> Case {
    let cfg = cfg(2, 2, 8, 6, 13);
    let (batch, seq) = (3, 5);
    let mut params = init_params(&cfg, seed);
    let mut rng = Rng::new(seed);
    for p in &mut params {
        *p += (0.1 * rng.normal()) as f32; // move away from init (biases, LN nonzero)
    }
    let tokens = (0..batch * seq)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let targets = (0..batch * seq)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    Case {
        cfg,
        params,
        tokens,
        targets,
        batch,
        seq,
    }
}

/// The `Length` error, as the result of any pass.
fn len_err<T>(what: &'static str, got: usize, want: usize) -> Result<T, ModelError> {
    Err(ModelError::Length { what, got, want })
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn passes_reject_bad_inputs_with_errors_and_stay_usable() {
    let k = case(1);
    let c = &k.cfg;
    let n = k.batch * k.seq;
    let np = c.n_params();
    let mut ctx = TrainingContext::new(c, k.batch, k.seq).unwrap();
    let mut grads = vec![0.0f32; np];
    let mut bad = k.tokens.clone();
    bad[7] = 13;
    assert_eq!(
        forward_backward(c, &k.params, &mut ctx, &bad, &k.targets, &mut grads),
        Err(ModelError::TokenOutOfRange {
            what: "tokens",
            index: 7,
            value: 13,
            vocab_size: 13
        })
    );
    assert_eq!(
        forward_loss(c, &k.params, &mut ctx, &bad, &k.targets),
        Err(ModelError::TokenOutOfRange {
            what: "tokens",
            index: 7,
            value: 13,
            vocab_size: 13
        })
    );
    let mut bad_t = k.targets.clone();
    bad_t[n - 1] = u32::MAX;
    let err = forward_backward(c, &k.params, &mut ctx, &k.tokens, &bad_t, &mut grads).unwrap_err();
    assert_eq!(
        err,
        ModelError::TokenOutOfRange {
            what: "targets",
            index: n - 1,
            value: u32::MAX,
            vocab_size: 13
        }
    );
    assert!(err.to_string().contains(&u32::MAX.to_string()));
    assert!(forward_loss(c, &k.params, &mut ctx, &k.tokens, &bad_t).is_err());

    assert_eq!(
        forward_backward(
            c,
            &k.params,
            &mut ctx,
            &k.tokens[1..],
            &k.targets,
            &mut grads
        ),
        len_err("tokens", n - 1, n)
    );
    assert_eq!(
        forward_backward(
            c,
            &k.params,
            &mut ctx,
            &k.tokens,
            &k.targets[..0],
            &mut grads
        ),
        len_err("targets", 0, n)
    );
    assert_eq!(
        forward_backward(
            c,
            &k.params,
            &mut ctx,
            &k.tokens,
            &k.targets,
            &mut grads[1..]
        ),
        len_err("grads", np - 1, np)
    );
    assert_eq!(
        forward_backward(
            c,
            &k.params[..np - 1],
            &mut ctx,
            &k.tokens,
            &k.targets,
            &mut grads
        ),
        len_err("params", np - 1, np)
    );
    assert_eq!(
        forward_loss(c, &k.params, &mut ctx, &k.tokens, &k.targets[1..]),
        len_err("targets", n - 1, n)
    );
    let other = GptConfig {
        vocab_size: 14,
        ..*c
    };
    let other_params = init_params(&other, 1);
    assert_eq!(
        forward_backward(
            &other,
            &other_params,
            &mut ctx,
            &k.tokens,
            &k.targets,
            &mut grads
        ),
        Err(ModelError::ContextMismatch {
            built: *c,
            called: other
        })
    );

    // Sampling path.
    let mut logits = vec![0.0f32; c.vocab_size];
    assert_eq!(
        next_token_logits(c, &k.params, &mut ctx, &[], &mut logits),
        Err(ModelError::Zero {
            field: "tokens length"
        })
    );
    assert_eq!(
        next_token_logits(c, &k.params, &mut ctx, &k.tokens[..k.seq + 1], &mut logits),
        Err(ModelError::SequenceTooLong {
            seq: k.seq + 1,
            max: k.seq,
            limit: "the context's seq"
        })
    );
    assert_eq!(
        next_token_logits(c, &k.params, &mut ctx, &[1, 99], &mut logits),
        Err(ModelError::TokenOutOfRange {
            what: "tokens",
            index: 1,
            value: 99,
            vocab_size: 13
        })
    );
    assert_eq!(
        next_token_logits(c, &k.params, &mut ctx, &[1, 2], &mut logits[1..]),
        len_err("logits", 12, 13)
    );

    // After all the refusals the context gives what a fresh one gives.
    let loss = forward_backward(c, &k.params, &mut ctx, &k.tokens, &k.targets, &mut grads).unwrap();
    let mut fresh = TrainingContext::new(c, k.batch, k.seq).unwrap();
    let mut grads2 = vec![0.0f32; np];
    let loss2 =
        forward_backward(c, &k.params, &mut fresh, &k.tokens, &k.targets, &mut grads2).unwrap();
    assert_eq!(loss.to_bits(), loss2.to_bits());
    assert_eq!(bits(&grads), bits(&grads2));
}

#[test]
fn gradients_are_overwritten_and_bitwise_reproducible() {
    let k = case(2);
    let c = &k.cfg;
    let np = c.n_params();
    let mut ctx = TrainingContext::new(c, k.batch, k.seq).unwrap();
    let mut grads = vec![0.0f32; np];
    let loss1 =
        forward_backward(c, &k.params, &mut ctx, &k.tokens, &k.targets, &mut grads).unwrap();
    let first = bits(&grads);
    assert!(grads.iter().all(|g| g.is_finite()));
    // Every tensor gets a nonzero gradient (so "overwritten" is visible everywhere).
    for t in ParamLayout::new(c).tensors() {
        assert!(
            grads[t.range()].iter().any(|&g| g != 0.0),
            "{} has zero gradient",
            t.name
        );
    }

    // Garbage in the buffer and in the context's activations (another batch ran).
    let mut rng = Rng::new(9);
    for (i, g) in grads.iter_mut().enumerate() {
        *g = match i % 3 {
            0 => f32::NAN,
            1 => 1e30,
            _ => rng.normal() as f32,
        };
    }
    let other = case(3);
    let mut scratch = vec![0.0f32; np];
    forward_backward(
        c,
        &other.params,
        &mut ctx,
        &other.tokens,
        &other.targets,
        &mut scratch,
    )
    .unwrap();
    let loss2 =
        forward_backward(c, &k.params, &mut ctx, &k.tokens, &k.targets, &mut grads).unwrap();
    assert_eq!(loss1.to_bits(), loss2.to_bits());
    assert_eq!(first, bits(&grads));
    assert_ne!(
        bits(&scratch),
        first,
        "a different batch gives different gradients"
    );
}

#[test]
fn forward_loss_equals_forward_backward_loss_bitwise() {
    for seed in 0..4 {
        let k = case(seed);
        let c = &k.cfg;
        let mut ctx = TrainingContext::new(c, k.batch, k.seq).unwrap();
        let mut grads = vec![0.0f32; c.n_params()];
        let a =
            forward_backward(c, &k.params, &mut ctx, &k.tokens, &k.targets, &mut grads).unwrap();
        let b = forward_loss(c, &k.params, &mut ctx, &k.tokens, &k.targets).unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "seed {seed}: {a} vs {b}");
        assert!(a.is_finite() && a > 0.0);
    }
}

#[test]
fn next_token_logits_use_only_the_prefix() {
    // Causality: the logits after a prefix do not depend on what the context held
    // before or on a longer run's tokens, and are reproducible.
    let k = case(5);
    let c = &k.cfg;
    let mut ctx = TrainingContext::new(c, k.batch, k.seq).unwrap();
    let mut a = vec![0.0f32; c.vocab_size];
    next_token_logits(c, &k.params, &mut ctx, &k.tokens[..3], &mut a).unwrap();
    let mut grads = vec![0.0f32; c.n_params()];
    forward_backward(c, &k.params, &mut ctx, &k.tokens, &k.targets, &mut grads).unwrap();
    let mut b = vec![0.0f32; c.vocab_size];
    next_token_logits(c, &k.params, &mut ctx, &k.tokens[..3], &mut b).unwrap();
    assert_eq!(bits(&a), bits(&b));
    let mut longer = vec![0.0f32; c.vocab_size];
    next_token_logits(c, &k.params, &mut ctx, &k.tokens[..4], &mut longer).unwrap();
    assert_ne!(bits(&a), bits(&longer));
}

/// Sample mean and standard deviation.
fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

#[test]
fn init_is_deterministic_with_gpt2_statistics() {
    let c = shape_s();
    let a = init_params(&c, 42);
    assert_eq!(a.len(), c.n_params());
    assert_eq!(bits(&a), bits(&init_params(&c, 42)));
    assert_eq!(bits(&a), bits(&try_init_params(&c, 42).unwrap()));
    assert_ne!(bits(&a), bits(&init_params(&c, 43)));

    let layout = ParamLayout::new(&c);
    let proj_std = 0.02 / (2.0 * c.n_layer as f64).sqrt();
    for t in layout.tensors() {
        let x = &a[t.range()];
        if t.is_matrix() {
            let want = if t.name.ends_with("c_proj.weight") {
                proj_std
            } else {
                0.02
            };
            let (mean, std) = mean_std(x);
            // >= 16,384 draws: the sample std is within ~0.6% of the true one (1 sigma),
            // so 4% is > 6 sigma; the mean within 5 standard errors of 0.
            assert!(
                (std / want - 1.0).abs() < 0.04,
                "{}: std {std} vs {want}",
                t.name
            );
            assert!(
                mean.abs() < 5.0 * want / (x.len() as f64).sqrt(),
                "{}: mean {mean}",
                t.name
            );
        } else if t.name.contains("ln_") && t.name.ends_with(".weight") {
            assert!(x.iter().all(|&v| v == 1.0), "{}", t.name);
        } else {
            assert!(x.iter().all(|&v| v == 0.0), "{}", t.name);
        }
    }

    // An invalid config is refused (checked) or gives an empty buffer (unchecked).
    let bad = GptConfig { n_embd: 0, ..c };
    assert_eq!(
        try_init_params(&bad, 1),
        Err(ModelError::Zero { field: "n_embd" })
    );
    assert!(init_params(&bad, 1).is_empty());
}
