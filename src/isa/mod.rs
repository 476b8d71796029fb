//! Owns the choice of instruction set: which compiled variant of the kernels runs
//! ([`Isa`]), run-time feature detection, the process-wide selection (`CLLM_ISA` or
//! [`select`]) with a per-thread override for tests ([`scoped`]), and the `dispatch!`
//! and `kernel!` macros that run one kernel body compiled for the selected ISA.
//! Must never compute anything itself and never let the choice change a result: every
//! kernel is written once, and every ISA runs the same sequence of rounded operations
//! (the canonical order below), so the paths differ only in speed.
//!
//! # The canonical order (why every path gives the same bits)
//! * Rust never contracts a multiply and an add into an FMA, and never reassociates
//!   floating-point arithmetic: a loop body compiled for AVX-512, AVX2 or the baseline
//!   instruction set performs the same IEEE operations, only more of them per
//!   instruction. The only fused operations are explicit [`f32::mul_add`] calls
//!   (a hardware FMA on the AVX2 and AVX-512 paths, libm's exactly rounded `fmaf` on the
//!   portable one).
//! * Every reduction has an explicit, width-independent order: the kernels' `sum`/`dot`
//!   use eight logical lanes combined in a fixed tree, the gradient norm sixteen f64
//!   lanes, the slot reduction a fixed pairwise tree over slots. A wider register runs
//!   several logical lanes at once; it never changes which values are added together.
//! * Every matmul output element is one FMA chain along `k` in increasing order
//!   (`model::kernels::gemm`); the register tile's width decides only how many chains run
//!   side by side.
//!
//! Hence a run's bits do not depend on [`active`]; the tests check it kernel by kernel
//! (`tests/kernels_isa.rs`) and end to end (`tests/cli.rs`: byte-identical checkpoints
//! under each forced path).
//!
//! # Selection
//! [`active`] is, in order: the calling thread's [`scoped`] override, the process-wide
//! choice made by [`select`], or (on first use) `CLLM_ISA` when it names a supported
//! path, else [`Isa::best`]. A bad `CLLM_ISA` never fails a kernel call: front ends call
//! [`Isa::from_env`] (or [`Isa::parse`] on a flag) first and report its error.

use core::cell::Cell;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// A compiled variant of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// The baseline instruction set of the target (SSE2 on x86-64), FMAs through libm.
    Portable,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512 (foundation and vector-length extensions) with FMA.
    Avx512,
}

/// Errors of choosing an [`Isa`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    /// The name is not one of `portable`, `avx2`, `avx512`.
    #[error("unknown instruction-set path {name:?} (expected portable, avx2 or avx512)")]
    Unknown {
        /// What was asked for.
        name: String,
    },
    /// The CPU lacks a feature the path needs.
    #[error("this CPU cannot run the {isa} path: it lacks {missing}")]
    Unsupported {
        /// The path asked for.
        isa: Isa,
        /// The missing CPU features, comma-separated.
        missing: String,
    },
}

impl Isa {
    /// Every path, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The environment variable that forces a path.
    pub const ENV: &'static str = "CLLM_ISA";

    /// The path's name as `CLLM_ISA` and `--isa` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The CPU features the path is compiled with (as `/proc/cpuinfo` and
    /// `is_x86_feature_detected!` name them).
    pub fn features(self) -> &'static [&'static str] {
        match self {
            Isa::Portable => &[],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Avx512 => &["avx512f", "avx512vl", "avx2", "fma"],
        }
    }

    /// The features of [`Isa::features`] this CPU lacks (empty: the path runs here).
    pub fn missing_features(self) -> Vec<&'static str> {
        self.features()
            .iter()
            .copied()
            .filter(|f| !has_feature(f))
            .collect()
    }

    /// Whether this CPU can run the path (run-time detection, cached by std).
    pub fn supported(self) -> bool {
        self.features().iter().all(|f| has_feature(f))
    }

    /// The fastest path this CPU supports.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Portable)
    }

    /// The paths this CPU supports, fastest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// Parses a path name and checks that this CPU can run it.
    pub fn parse(name: &str) -> Result<Isa, IsaError> {
        let isa = match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Isa::Portable,
            "avx2" => Isa::Avx2,
            "avx512" => Isa::Avx512,
            _ => {
                return Err(IsaError::Unknown {
                    name: name.to_string(),
                })
            }
        };
        isa.check()
    }

    /// `Ok(self)` if this CPU can run the path, else the missing features.
    pub fn check(self) -> Result<Isa, IsaError> {
        let missing = self.missing_features();
        if missing.is_empty() {
            Ok(self)
        } else {
            Err(IsaError::Unsupported {
                isa: self,
                missing: missing.join(", "),
            })
        }
    }

    /// The path `CLLM_ISA` asks for: `Ok(None)` when it is unset or empty.
    pub fn from_env() -> Result<Option<Isa>, IsaError> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.trim().is_empty() => Isa::parse(&v).map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(IsaError::Unknown {
                name: v.to_string_lossy().into_owned(),
            }),
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
        }
    }

    fn from_code(code: u8) -> Option<Isa> {
        match code {
            1 => Some(Isa::Portable),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Isa {
    type Err = IsaError;
    fn from_str(s: &str) -> Result<Isa, IsaError> {
        Isa::parse(s)
    }
}

/// Run-time detection of one feature named as in [`Isa::features`].
fn has_feature(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match name {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        false
    }
}

/// No choice made yet (the codes of [`Isa::code`] are non-zero).
const UNSET: u8 = 0;

/// The process-wide choice ([`select`], or `CLLM_ISA`/[`Isa::best`] on first use).
static GLOBAL: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    /// The calling thread's override ([`scoped`]).
    static LOCAL: Cell<u8> = const { Cell::new(UNSET) };
}

/// The path the kernels run on the calling thread now (see the module doc). Always one
/// this CPU supports.
#[inline]
pub fn active() -> Isa {
    if let Some(isa) = Isa::from_code(LOCAL.with(Cell::get)) {
        return isa;
    }
    // Relaxed: the byte is the whole message (no other memory is published through
    // it), and every value it can hold names a supported path.
    if let Some(isa) = Isa::from_code(GLOBAL.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = match Isa::from_env() {
        Ok(Some(isa)) => isa,
        Ok(None) | Err(_) => Isa::best(),
    };
    // Relaxed: as above; two first callers store the same value.
    let _ = GLOBAL.compare_exchange(UNSET, isa.code(), Ordering::Relaxed, Ordering::Relaxed);
    Isa::from_code(GLOBAL.load(Ordering::Relaxed)).unwrap_or(isa)
}

/// Makes `isa` the process-wide path (for every thread without a [`scoped`]
/// override), after checking that this CPU can run it. Kernel calls already running
/// finish on the path they started with; every result is the same either way.
pub fn select(isa: Isa) -> Result<Isa, IsaError> {
    let isa = isa.check()?;
    // Relaxed: see `active`.
    GLOBAL.store(isa.code(), Ordering::Relaxed);
    Ok(isa)
}

/// Runs `f` with the calling thread's kernels on `isa` (other threads are unaffected:
/// for tests and benches that compare paths in one process), after checking that this
/// CPU can run it. The previous override is restored afterwards, also on a panic.
pub fn scoped<R>(isa: Isa, f: impl FnOnce() -> R) -> Result<R, IsaError> {
    Ok(on(isa.check()?, f))
}

/// As [`scoped`], but a path this CPU cannot run runs as [`Isa::Portable`] (for
/// callers that name a path per call, such as `gemm_on`).
pub fn on<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    let isa = if isa.supported() { isa } else { Isa::Portable };
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|l| l.replace(isa.code())));
    f()
}

/// `dispatch!(body_fn(arg: Type, ...))` calls `body_fn(arg, ...)` from a function
/// compiled for the [`active`] path: with AVX-512 (`avx512f,avx512vl,avx2,fma`), with
/// AVX2 and FMA, or as it is (portable). `body_fn` must be `#[inline(always)]` and
/// return `()`, so its loops are compiled (and vectorised) inside each variant. Every
/// variant performs the same operations in the same order (module doc): only the
/// vector width changes.
macro_rules! dispatch {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// The AVX-512-compiled trampoline.
            ///
            /// # Safety
            /// The CPU must support the features of `Isa::Avx512`.
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            /// The AVX2-compiled trampoline.
            ///
            /// # Safety
            /// The CPU must support AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            match $crate::isa::active() {
                // SAFETY: `active` only returns paths this CPU supports (checked at
                // run time when they were chosen).
                $crate::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                $crate::isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                $crate::isa::Isa::Portable => {}
            }
        }
        $body($($arg),*)
    }};
}
pub(crate) use dispatch;

/// `kernel! { /// doc ... pub fn name(arg: Type, ...) { body } }` defines `name` with
/// its body written once and compiled for every path by [`dispatch!`]: the body
/// becomes an `#[inline(always)]` inner function, so its loops are vectorised inside
/// each trampoline at that path's width. The signature is written once, here; the
/// body must return `()`.
macro_rules! kernel {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            $crate::isa::dispatch!(body($($arg: $ty),*))
        }
    };
}
pub(crate) use kernel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for isa in Isa::available() {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
            assert_eq!(Isa::parse(&isa.name().to_uppercase()), Ok(isa));
        }
        assert!(matches!(Isa::parse("sse9"), Err(IsaError::Unknown { .. })));
        assert!(Isa::Portable.supported());
    }

    #[test]
    fn scoped_overrides_only_inside_and_is_restored() {
        let outside = active();
        let inner = scoped(Isa::Portable, || {
            let nested = scoped(Isa::best(), active).unwrap();
            (active(), nested)
        })
        .unwrap();
        assert_eq!(inner, (Isa::Portable, Isa::best()));
        assert_eq!(active(), outside);
    }
}
