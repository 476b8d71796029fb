//! The `cllm` command line. Owns argument parsing, progress and error reporting only;
//! all work is done by the library, which never imports this file or `src/cli/`.

mod cli;

use clap::{Parser, Subcommand};

/// cllm: a verified CPU training engine for small GPT-2-style language models.
///
/// Start with `cllm train`: with no data argument it trains on a built-in synthetic
/// corpus whose exact entropy rate is known, so you can watch the validation loss
/// approach the best any model can reach.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a GPT-2 model on a text file or directory (default: the built-in corpus).
    Train(Box<cli::train::TrainArgs>),
    /// Generate text from a checkpoint.
    Sample(cli::sample::SampleArgs),
    /// Evaluate a checkpoint on a corpus: mean loss and bits per byte.
    Eval(cli::eval::EvalArgs),
    /// Measure training speed at 1..=N threads under both schedulers: tokens/s,
    /// speedup, per-worker utilization and memory; writes bench.json and scaling.svg.
    Bench(cli::bench::BenchArgs),
    /// Write the built-in corpus to a file and print its entropy rate.
    Corpus(cli::corpus::CorpusArgs),
    /// Run the concurrency pipeline end to end on synthetic gradients: a pre-fetch
    /// thread feeds micro-batches, workers pull them from the lock-free work queue and
    /// fill gradient slots, then reduce them in parallel by parameter range. Checks the
    /// result is bitwise equal to a single-threaded reduction and prints throughput.
    Demo {
        /// Worker threads.
        #[arg(long, default_value_t = cli::default_threads())]
        threads: usize,
        /// Training steps to simulate.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Micro-batches (gradient slots) per step.
        #[arg(long, default_value_t = 8)]
        micro_batches: usize,
        /// Floats per gradient (the model's parameter count).
        #[arg(long, default_value_t = 1 << 18)]
        params: usize,
    },
}

fn main() {
    #[cfg(unix)]
    // SAFETY: first thing in main, before any other thread exists. Restores the
    // default SIGPIPE action (Rust ignores it), so `cllm ... | head` ends quietly like
    // any Unix tool instead of panicking on the closed pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => cli::train::run(*args),
        Command::Sample(args) => cli::sample::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Corpus(args) => cli::corpus::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Demo {
            threads,
            steps,
            micro_batches,
            params,
        } => cli::demo::run(threads, steps, micro_batches, params),
    };
    if let Err(err) = result {
        if let Some(i) = err.downcast_ref::<cli::train::Interrupted>() {
            eprintln!("{i}");
            std::process::exit(130);
        }
        eprintln!("error: {}", one_line(&err));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, outermost first. A cause whose text already
/// ends the line is skipped: many library errors print their source in their own
/// message, and repeating it would double the line's tail.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
