//! The `cllm` binary as a user meets it: help text, exit codes, one-line errors.

use std::process::Command;

fn cllm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .output()
        .expect("the cllm binary runs")
}

#[test]
fn help_explains_every_command() {
    let out = cllm(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo"), "{text}");
}

#[test]
fn demo_is_bitwise_equal_to_single_threaded() {
    let out = cllm(&[
        "demo",
        "--threads",
        "3",
        "--steps",
        "4",
        "--micro-batches",
        "5",
        "--params",
        "1000",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("bitwise identical"), "{stdout}");
}

#[test]
fn bad_arguments_fail_with_one_line_and_no_panic() {
    for args in [
        &["demo", "--threads", "0"][..],
        &["demo", "--params", "0"],
        &["demo", "--steps", "-3"],
        &["demo", "--micro-batches", "many"],
    ] {
        let out = cllm(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}
