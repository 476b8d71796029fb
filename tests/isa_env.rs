//! Proves that `CLLM_ISA` decides the path the library's kernels run when no front end
//! chose one: this binary re-runs itself as a child with `CLLM_ISA` set to each path
//! (and to an unknown name, which falls back to the fastest path), and the child reports
//! `cllm::isa::active()`. A child process is used because the choice is process-wide.
//! Must never touch: anything but `cllm::isa`.

#[path = "watchdog/mod.rs"]
mod watchdog;
use std::time::Duration;

use cllm::isa::{self, Isa};
use std::process::Command;

/// Marker the child prints before the name of its active path.
const MARK: &str = "ACTIVE_ISA=";

/// The child half: prints the active path. Harmless when run on its own.
#[test]
fn report_active_isa() {
    println!("{MARK}{}", isa::active().name());
}

/// What a child with `CLLM_ISA=value` reports.
fn child_reports(value: &str) -> String {
    let _w = watchdog::Watchdog::arm(
        format!("child with CLLM_ISA={value}"),
        Duration::from_secs(300),
    );
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--exact",
            "report_active_isa",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(Isa::ENV, value)
        .output()
        .expect("the test binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(MARK)?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| panic!("the child printed no {MARK} line:\n{text}"))
}

#[test]
fn cllm_isa_selects_the_path_of_every_kernel() {
    for want in Isa::available() {
        assert_eq!(child_reports(want.name()), want.name(), "CLLM_ISA={want}");
    }
    if !Isa::Avx512.supported() {
        println!("skipped: no avx512f (CLLM_ISA=avx512 is not exercised)");
    }
    // Unknown or empty: the fastest path (front ends report the bad name themselves).
    assert_eq!(child_reports("sse9"), Isa::best().name());
    assert_eq!(child_reports(""), Isa::best().name());
}

#[test]
fn select_overrides_and_refuses_nothing_supported() {
    // `select` is process-wide; this binary's other tests only read `active` in child
    // processes, so changing it here races nothing they check.
    for isa in Isa::available() {
        assert_eq!(isa::select(isa), Ok(isa));
        assert_eq!(isa::active(), isa);
    }
    for isa in Isa::ALL {
        if !isa.supported() {
            let err = isa::select(isa).expect_err("unsupported path refused");
            assert!(err.to_string().contains(&isa.missing_features().join(", ")));
        }
    }
}
