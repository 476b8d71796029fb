//! `cllm demo`: the concurrency pipeline end to end on synthetic gradients (pre-fetch
//! thread, lock-free work queue, gradient segments reduced in parallel), checked
//! bitwise against a single-threaded run. Must never touch the model.

use anyhow::{bail, Context, Result};
use cllm::queue::{PrefetchQueue, WorkQueue};
use cllm::segments::{reduce, GradientSegments};
use parking_lot::{Condvar, Mutex};
use std::time::Instant;

/// A unit of work for the demo's workers.
#[derive(Debug, Clone, Copy)]
enum Task {
    /// Compute micro-batch `slot` of `step` (a synthetic gradient seeded by `seed`).
    Fill { step: usize, slot: usize, seed: u64 },
    /// Reduce parameter range `part` of `step` and apply the update to it.
    Reduce { step: usize, part: usize },
}

/// The synthetic training loop: returns the final "weights" after `steps` updates.
pub fn run(threads: usize, steps: usize, micro_batches: usize, params: usize) -> Result<()> {
    if threads == 0 || steps == 0 || micro_batches == 0 || params == 0 {
        bail!("--threads, --steps, --micro-batches and --params must all be at least 1");
    }
    println!(
        "demo: {threads} workers, {steps} steps x {micro_batches} micro-batches, {params} floats per gradient"
    );
    let started = Instant::now();
    let threaded = run_threaded(threads, steps, micro_batches, params)?;
    let threaded_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let reference = run_single(steps, micro_batches, params);
    let single_secs = started.elapsed().as_secs_f64();
    let same = threaded
        .iter()
        .zip(&reference)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    let floats = (steps * micro_batches * params) as f64;
    println!(
        "threaded: {threaded_secs:.3} s ({:.0} M gradient floats/s); single-threaded reference: {single_secs:.3} s",
        floats / threaded_secs / 1e6
    );
    if !same {
        bail!("threaded result differs from the single-threaded reference");
    }
    println!("final weights are bitwise identical to the single-threaded run");
    Ok(())
}

/// One parameter range's weights, tagged with the next step whose update it expects,
/// and the condition variable a worker waits on for its turn.
type RangeWeights = (Mutex<(usize, Vec<f32>)>, Condvar);

fn run_threaded(
    threads: usize,
    steps: usize,
    micro_batches: usize,
    params: usize,
) -> Result<Vec<f32>> {
    let segments = GradientSegments::<cllm::sync::Std>::new(micro_batches, params, threads)
        .context("laying out gradient segments")?;
    // Each range's weights with the next step whose update it expects: updates of one
    // range must apply in step order (float updates do not commute).
    let weights: Vec<RangeWeights> = (0..threads)
        .map(|p| {
            let init = (0, vec![0.0f32; segments.part_range(p).len()]);
            (Mutex::new(init), Condvar::new())
        })
        .collect();
    let work: WorkQueue<Task> = WorkQueue::default();
    let prefetch = PrefetchQueue::<Task, std::convert::Infallible>::spawn(
        cllm::queue::PREFETCH_DEFAULT_CAPACITY,
        move |tx| {
            for step in 0..steps {
                for slot in 0..micro_batches {
                    let seed = (step * micro_batches + slot) as u64;
                    if tx.send(Task::Fill { step, slot, seed }).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        },
    )
    .context("starting the pre-fetch thread")?;

    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (segments, work, weights) = (&segments, &work, &weights);
                scope.spawn(move || -> Result<()> {
                    let mut grad = Vec::new();
                    while let Some(task) = work.pop() {
                        match task {
                            Task::Fill { step, slot, seed } => {
                                let mut writer = segments.claim(step, slot)?;
                                writer.write(|g| fill_gradient(g, seed));
                                writer.publish();
                            }
                            Task::Reduce { step, part } => {
                                grad.resize(segments.part_range(part).len(), 0.0);
                                segments.reduce_part(step, part, &mut grad)?;
                                let (lock, turn) = &weights[part];
                                let mut range = lock.lock();
                                while range.0 != step {
                                    turn.wait(&mut range);
                                }
                                apply_update(&mut range.1, &grad);
                                range.0 += 1;
                                turn.notify_all();
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut dispatched = 0;
        for task in prefetch {
            let task = task.context("pre-fetch thread failed")?;
            work.push(task).ok().context("work queue closed early")?;
            dispatched += 1;
            if dispatched % micro_batches == 0 {
                let step = dispatched / micro_batches - 1;
                for part in 0..threads {
                    work.push(Task::Reduce { step, part })
                        .ok()
                        .context("work queue closed early")?;
                }
            }
        }
        work.close();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        Ok(())
    })?;
    Ok(weights
        .into_iter()
        .flat_map(|(range, _)| range.into_inner().1)
        .collect())
}

fn run_single(steps: usize, micro_batches: usize, params: usize) -> Vec<f32> {
    let mut weights = vec![0.0f32; params];
    let mut slots = vec![vec![0.0f32; params]; micro_batches];
    let mut grad = vec![0.0f32; params];
    for step in 0..steps {
        for (slot, buf) in slots.iter_mut().enumerate() {
            fill_gradient(buf, (step * micro_batches + slot) as u64);
        }
        let inputs: Vec<&[f32]> = slots.iter().map(Vec::as_slice).collect();
        reduce::pairwise_sum_into(&inputs, &mut grad, cllm::isa::Isa::Portable);
        apply_update(&mut weights, &grad);
    }
    weights
}

/// A stand-in optimizer step, elementwise so that a range update equals a full one.
fn apply_update(weights: &mut [f32], grad: &[f32]) {
    for (w, g) in weights.iter_mut().zip(grad) {
        *w -= 0.01 * *g;
    }
}

/// Deterministic pseudo-random values of mixed magnitude (so summation order matters).
fn fill_gradient(grad: &mut [f32], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for g in grad.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mantissa = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let scale = [1e-3f32, 1.0, 1e3][(x % 3) as usize];
        *g = mantissa * scale;
    }
}
