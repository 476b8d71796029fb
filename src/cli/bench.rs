//! `cllm bench`: train one model shape for a fixed number of steps at 1..=N threads
//! under both schedulers, on one or more instruction-set paths, and report tokens/s,
//! speedup over one thread, per-worker utilization and resident memory (and the
//! tokens/s ratio between the paths); write the table as JSON and a scaling plot.
//! Every configuration must end in bitwise identical weights. Started by `mpirun` (a
//! build with the `mpi` feature), it measures the shape on every rank instead and
//! reports the bytes each step sends and the time spent in collectives.
//! Must never be used to decide a test (timings are for people, never pass/fail),
//! and never implement training itself.

use super::{isa_from_env, load_corpus, parse_isa};
use anyhow::{bail, Context, Result};
use clap::Args;
use cllm::data::ByteTokenizer;
use cllm::dist::{RankTrainer, Transport};
use cllm::isa::Isa;
use cllm::model::GptConfig;
use cllm::train::driver::{drive, Cadence, RunPlan};
use cllm::train::optim::AdamWConfig;
use cllm::train::report::{plot_svg, Series};
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Options of `cllm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model shape: `s` (2 layers, width 128, 4 heads, context 64, 16 sequences per
    /// step) or `m` (4 layers, width 256, 8 heads, context 128, 8 sequences per step).
    #[arg(long, value_enum, default_value_t = Shape::S)]
    pub shape: Shape,
    /// Measured optimizer steps per configuration (after the warm-up steps).
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
    /// Unmeasured steps first (page faults, caches, thread start-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Measure 1..=this many threads [default: the number of cores]. Under mpirun
    /// (a build with the `mpi` feature): the threads of every rank [default: 1].
    #[arg(long)]
    pub max_threads: Option<usize>,
    /// Micro-batches per step; the step's sequences are split evenly between them
    /// [default: the smallest divisor of the shape's sequences per step that is at
    /// least the largest thread count, so every worker has one].
    #[arg(long)]
    pub micro_batches: Option<usize>,
    /// Which schedulers to measure.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [super::train::SchedulerArg::Lockfree, super::train::SchedulerArg::Barrier])]
    pub scheduler: Vec<super::train::SchedulerArg>,
    /// Instruction-set paths to measure, comma-separated (`avx512,avx2,portable`):
    /// every configuration runs on each listed path back to back, and the output
    /// gives the tokens/s ratio of the first path to each other one [default: the
    /// CLLM_ISA environment variable, else the fastest path this CPU supports]. Every
    /// path gives bitwise identical weights (checked); only the speed differs. A path
    /// this CPU cannot run is an error naming the missing CPU feature.
    #[arg(long, value_name = "PATH[,PATH...]", value_delimiter = ',')]
    pub isa: Vec<String>,
    /// Where to write bench.json and scaling.svg.
    #[arg(long, default_value = "cllm-bench")]
    pub out: PathBuf,
}

/// The shapes of the peer comparison.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// 2 layers, width 128, 4 heads, context 64, 16 sequences per step.
    S,
    /// 4 layers, width 256, 8 heads, context 128, 8 sequences per step.
    M,
}

/// One measured configuration.
struct Row {
    scheduler: Scheduler,
    isa: Isa,
    threads: usize,
    tokens_per_s: f64,
    utilization: Vec<f64>,
    rss_mib: Option<f64>,
}

/// Run `cllm bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    // Under an MPI launcher every rank needs a micro-batch of its own too.
    let ranks = cllm::dist::launch::launched_ranks().unwrap_or(1);
    let max_threads = match (args.max_threads, ranks) {
        (Some(n), _) => n,
        (None, 1) => super::default_threads(),
        (None, _) => 1,
    };
    if max_threads == 0 || args.steps == 0 {
        bail!("--max-threads and --steps must be at least 1");
    }
    let isas = isas(&args.isa)?;
    let (layers, width, heads, context, sequences) = match args.shape {
        Shape::S => (2, 128, 4, 64, 16),
        Shape::M => (4, 256, 8, 128, 8),
    };
    let micro_batches = args.micro_batches.unwrap_or_else(|| {
        (max_threads * ranks..=sequences)
            .find(|m| sequences % m == 0)
            .unwrap_or(sequences)
    });
    if micro_batches == 0 || sequences % micro_batches != 0 {
        bail!("--micro-batches {micro_batches} must divide the shape's {sequences} sequences per step");
    }
    let total = args.warmup + args.steps;
    let cfg = TrainConfig {
        model: GptConfig {
            n_layer: layers,
            n_head: heads,
            n_embd: width,
            n_positions: context,
            vocab_size: ByteTokenizer::VOCAB,
        },
        batch: sequences / micro_batches,
        micro_batches,
        seq: context,
        steps: total,
        schedule: Schedule {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup: 1,
            total,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 1,
    };
    cfg.validate()?;
    let (corpus, _) = load_corpus(None)?;
    let train: Arc<[u32]> = corpus.train.into();
    if let Some(world) = super::dist::world(micro_batches)? {
        return rank_bench(&args, &cfg, &train, max_threads, world);
    }
    println!(
        "cllm bench: shape {:?} ({layers} layers, width {width}, {heads} heads, context {context}), \
         {sequences} sequences per step as {micro_batches} micro-batches of {}; \
         {} measured steps after {} warm-up, {} tokens per step; isa {}",
        args.shape,
        cfg.batch,
        args.steps,
        args.warmup,
        cfg.tokens_per_step(),
        isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "{:<10} {:<8} {:>7} {:>10} {:>8} {:>10}  utilization per worker",
        "scheduler", "isa", "threads", "tokens/s", "speedup", "RSS MiB"
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut final_weights: Option<Vec<u32>> = None;
    for &sched in &args.scheduler {
        let scheduler: Scheduler = sched.into();
        for threads in 1..=max_threads {
            // The paths back to back, so machine load drifts least between them.
            for &isa in &isas {
                cllm::isa::select(isa).context("selecting the instruction-set path")?;
                let state = TrainState::initial(&cfg)?;
                let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler)?;
                let plan = |stop| timing_plan(&train, stop, isa);
                let never = AtomicBool::new(false);
                if args.warmup > 0 {
                    drive(&mut trainer, &plan(args.warmup), &never, &mut ()).context("warm-up")?;
                }
                let before = trainer.totals().clone();
                let outcome =
                    drive(&mut trainer, &plan(total), &never, &mut ()).context("measured run")?;
                let secs = outcome.summary.secs;
                // The measured run's share of the trainer's totals.
                let after = trainer.totals();
                let wall = (after.wall - before.wall).as_secs_f64();
                let utilization = after
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let earlier = before.workers.get(i).map_or(Duration::ZERO, |b| b.busy);
                        (w.busy - earlier).as_secs_f64() / wall
                    })
                    .collect::<Vec<_>>();
                let rss_mib = resident_mib();
                // Every configuration must end in the same weights: say so if not.
                let bits: Vec<u32> = outcome.state.params.iter().map(|x| x.to_bits()).collect();
                match &final_weights {
                    None => final_weights = Some(bits),
                    Some(want) if *want != bits => {
                        bail!("{scheduler:?} with {threads} threads on {isa} ended in different weights")
                    }
                    Some(_) => {}
                }
                let row = Row {
                    scheduler,
                    isa,
                    threads,
                    tokens_per_s: (args.steps as usize * cfg.tokens_per_step()) as f64 / secs,
                    utilization,
                    rss_mib,
                };
                let base = rows
                    .iter()
                    .find(|r| r.scheduler == scheduler && r.isa == isa && r.threads == 1)
                    .map_or(row.tokens_per_s, |r| r.tokens_per_s);
                println!(
                    "{:<10} {:<8} {:>7} {:>10.0} {:>7.2}x {:>10}  {}",
                    name(scheduler),
                    isa.name(),
                    threads,
                    row.tokens_per_s,
                    row.tokens_per_s / base,
                    row.rss_mib.map_or("?".into(), |m| format!("{m:.1}")),
                    row.utilization
                        .iter()
                        .map(|u| format!("{:.1}%", 100.0 * u))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                rows.push(row);
            }
        }
    }
    match isas.len() {
        1 => println!("every configuration ended in bitwise identical weights"),
        n => println!(
            "every configuration ended in bitwise identical weights, on all {n} instruction-set paths"
        ),
    }
    print_isa_ratios(&args.scheduler, max_threads, &isas, &rows);
    for &isa in &isas {
        let at_most = |s: Scheduler| {
            rows.iter()
                .filter(|r| r.scheduler == s && r.isa == isa)
                .max_by_key(|r| r.threads)
        };
        if let (Some(lf), Some(ba)) = (at_most(Scheduler::LockFree), at_most(Scheduler::Barrier)) {
            let on = match isas.len() {
                1 => String::new(),
                _ => format!(" on {isa}"),
            };
            println!(
                "lock-free / barrier at {} threads{on}: {:.3}x",
                lf.threads,
                lf.tokens_per_s / ba.tokens_per_s
            );
        }
    }
    write_outputs(&args, &cfg, &isas, &rows)
}

/// `cllm bench` as one rank of an MPI run: the shape on every rank with `threads`
/// threads each, through the run driver; rank 0 reports tokens/s and, for every rank,
/// the bytes it sent per step and its time in collectives, and writes them to
/// bench.json.
fn rank_bench<T: Transport>(
    args: &BenchArgs,
    cfg: &TrainConfig,
    train: &Arc<[u32]>,
    threads: usize,
    mut world: T,
) -> Result<()> {
    let (rank, ranks) = (world.rank(), world.size());
    let agreed = super::dist::fingerprint_json(&(cfg, args.steps, args.warmup, &args.isa))
        .and_then(|arguments| super::dist::agree(&mut world, &[("arguments", arguments)]));
    if let Err(e) = agreed {
        world.fail(&format!("{e:#}"));
        return Err(e);
    }
    let isa = match isas(&args.isa)?.as_slice() {
        [isa] => *isa,
        _ => bail!("under mpirun, cllm bench measures one instruction-set path (--isa NAME)"),
    };
    cllm::isa::select(isa).context("selecting the instruction-set path")?;
    let total = args.warmup + args.steps;
    let state = TrainState::initial(cfg)?;
    let mut trainer = RankTrainer::new(*cfg, state, threads, world)
        .with_context(|| format!("rank {rank} of {ranks}: setting up"))?;
    let plan = |stop| timing_plan(train, stop, isa);
    let never = AtomicBool::new(false);
    if args.warmup > 0 {
        drive(&mut trainer, &plan(args.warmup), &never, &mut ())
            .with_context(|| format!("rank {rank} of {ranks}: warm-up"))?;
    }
    let before = trainer
        .gather_comm_stats()
        .with_context(|| format!("rank {rank} of {ranks}: statistics"))?;
    let outcome = drive(&mut trainer, &plan(total), &never, &mut ())
        .with_context(|| format!("rank {rank} of {ranks}: measured run"))?;
    let after = trainer
        .gather_comm_stats()
        .with_context(|| format!("rank {rank} of {ranks}: statistics"))?;
    if rank != 0 {
        return Ok(());
    }
    let secs = outcome.summary.secs;
    let tokens_per_s = (args.steps as usize * cfg.tokens_per_step()) as f64 / secs;
    let step_time = secs / args.steps.max(1) as f64;
    // Per rank, over the measured steps: KiB sent per step, seconds per step in
    // collectives.
    let per_rank: Vec<(f64, f64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| {
            let steps = (a.steps - b.steps).max(1) as f64;
            (
                (a.bytes_sent - b.bytes_sent) as f64 / steps,
                (a.time - b.time).as_secs_f64() / steps,
            )
        })
        .collect();
    println!(
        "cllm bench (MPI): shape {:?}, {ranks} rank(s) x {} thread(s), {} micro-batches of {}; \
         {} measured steps after {} warm-up; isa {isa}",
        args.shape,
        trainer.threads(),
        cfg.micro_batches,
        cfg.batch,
        args.steps,
        args.warmup,
    );
    println!("tokens/s {tokens_per_s:.0}; step {:.2} ms", step_time * 1e3);
    for (r, (sent, comm)) in per_rank.iter().enumerate() {
        println!(
            "rank {r}: sent {:.1} KiB per step; {:.2} ms per step in collectives ({:.1}% of \
             the step, waiting for the slowest rank included)",
            sent / 1024.0,
            comm * 1e3,
            100.0 * comm / step_time,
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json_path = args.out.join("bench.json");
    let doc = json!({
        "shape": format!("{:?}", args.shape), "config": cfg, "steps": args.steps,
        "warmup": args.warmup, "isa": isa.name(), "ranks": ranks,
        "threads_per_rank": trainer.threads(), "tokens_per_s": tokens_per_s,
        "step_seconds": step_time,
        "bytes_sent_per_step": per_rank.iter().map(|r| r.0).collect::<Vec<_>>(),
        "comm_seconds_per_step": per_rank.iter().map(|r| r.1).collect::<Vec<_>>(),
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("wrote {}", json_path.display());
    Ok(())
}

// ---- helpers --------------------------------------------------------------------

/// A timed drive to `stop` through the run driver, as `cllm train` trains: no files,
/// no evaluation, one engine run per drive (no evaluation point splits it).
fn timing_plan(train: &Arc<[u32]>, stop: u64, isa: Isa) -> RunPlan<'_> {
    RunPlan {
        cadence: Cadence {
            eval_every: u64::MAX,
            checkpoint_every: 0,
            ..Cadence::default()
        },
        isa,
        ..RunPlan::new(train, stop)
    }
}

/// The paths to measure: `--isa` (each checked against this CPU, duplicates dropped),
/// else `CLLM_ISA`, else the fastest path.
fn isas(names: &[String]) -> Result<Vec<Isa>> {
    let mut isas = Vec::new();
    for name in names {
        let isa = parse_isa(name, "--isa")?;
        if !isas.contains(&isa) {
            isas.push(isa);
        }
    }
    if isas.is_empty() {
        isas.push(isa_from_env()?.unwrap_or_else(Isa::best));
    }
    Ok(isas)
}

/// With more than one path: for each scheduler and thread count, the tokens/s of the
/// first path over each other one.
fn print_isa_ratios(
    schedulers: &[super::train::SchedulerArg],
    max_threads: usize,
    isas: &[Isa],
    rows: &[Row],
) {
    let Some((&first, others)) = isas.split_first() else {
        return;
    };
    if others.is_empty() {
        return;
    }
    for &sched in schedulers {
        let scheduler: Scheduler = sched.into();
        for threads in 1..=max_threads {
            let speed = |isa: Isa| {
                rows.iter()
                    .find(|r| r.scheduler == scheduler && r.threads == threads && r.isa == isa)
                    .map(|r| r.tokens_per_s)
            };
            let Some(base) = speed(first) else { continue };
            let ratios = others
                .iter()
                .filter_map(|&isa| Some(format!("{first} / {isa} {:.3}x", base / speed(isa)?)))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "tokens/s ratio, {} at {threads} thread(s): {ratios}",
                name(scheduler)
            );
        }
    }
}

fn name(s: Scheduler) -> &'static str {
    match s {
        Scheduler::LockFree => "lock-free",
        Scheduler::Barrier => "barrier",
    }
}

/// bench.json and scaling.svg in `--out`.
fn write_outputs(args: &BenchArgs, cfg: &TrainConfig, isas: &[Isa], rows: &[Row]) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let table: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "scheduler": name(r.scheduler), "isa": r.isa.name(), "threads": r.threads,
                "tokens_per_s": r.tokens_per_s, "utilization": r.utilization,
                "rss_mib": r.rss_mib,
            })
        })
        .collect();
    let json_path = args.out.join("bench.json");
    let doc = json!({
        "shape": format!("{:?}", args.shape), "config": cfg, "steps": args.steps,
        "warmup": args.warmup, "isas": isas.iter().map(|i| i.name()).collect::<Vec<_>>(),
        "rows": table,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    // One line per scheduler and path (named by the scheduler alone with one path).
    let lines: Vec<(String, Vec<(f64, f64)>)> = [Scheduler::LockFree, Scheduler::Barrier]
        .into_iter()
        .flat_map(|s| isas.iter().map(move |&isa| (s, isa)))
        .map(|(s, isa)| {
            let label = match isas.len() {
                1 => name(s).to_string(),
                _ => format!("{} {isa}", name(s)),
            };
            let points = rows
                .iter()
                .filter(|r| r.scheduler == s && r.isa == isa)
                .map(|r| (r.threads as f64, r.tokens_per_s))
                .collect();
            (label, points)
        })
        .collect();
    let series: Vec<Series<'_>> = lines
        .iter()
        .map(|(label, points)| Series { label, points })
        .collect();
    let plot = args.out.join("scaling.svg");
    plot_svg(&plot, "cllm scaling", "threads", "tokens/s", &series, None)?;
    println!("table: {}  plot: {}", json_path.display(), plot.display());
    Ok(())
}

/// This process's resident memory now (Linux `/proc/self/status`), in MiB.
fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
