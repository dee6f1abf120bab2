//! `--set NAME=VALUE` through the real binary: overrides are type-checked where the `let`
//! is used, unknown names get a did-you-mean, and a swept override is checked per value.

use std::path::Path;
use std::process::Command;

use difflow::diagnostics::Code;

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .arg("check")
        .arg("mnist_cfg.diff")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
        .output()
        .expect("the difflow binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_good_override_checks_clean() {
    assert_eq!(check(&["--set", "T=500"]), (0, String::new()));
}

/// `check --set OVERRIDE` fails with exit 1 and a diagnostic `code`; its stderr.
fn refused(set: &str, code: Code) -> String {
    let (exit, err) = check(&["--set", set]);
    assert_eq!(exit, 1, "{err}");
    assert!(err.contains(code.as_str()), "{err}");
    err
}

#[test]
fn a_fraction_for_an_int_let_points_into_the_override() {
    let err = refused("T=2.5", Code::TypeMismatch);
    assert!(err.contains("[--set T=2.5:1:9]"), "{err}");
    assert!(err.contains("`steps` wants a whole number, found `2.5`"), "{err}");
}

#[test]
fn an_unknown_name_gets_a_did_you_mean() {
    let err = refused("Tx=5", Code::UndefinedName);
    assert!(err.contains("did you mean `T`?"), "{err}");
}

#[test]
fn a_swept_override_is_checked_for_every_value() {
    // T = 100 makes the 250 DDIM steps of `gen` impossible; T = 1000 is fine.
    let err = refused("T=sweep(100, 1000)", Code::SamplerSteps);
    assert!(err.contains("schedule of 100 steps") && err.contains("1 problem found"), "{err}");
}

#[test]
fn an_override_without_equals_is_a_clear_error() {
    let err = refused("T", Code::BadOverride);
    assert!(err.contains("NAME=VALUE"), "{err}");
}
