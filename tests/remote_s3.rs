//! S3 remotes against s3rver, an S3-compatible server that keeps objects in files
//! (installed into tests/s3_server/node_modules by scripts/setup_tests.sh), on
//! 127.0.0.1: the scenarios of tests/remote.rs, and where credentials and the endpoint
//! come from. s3rver checks that the access key exists, not the V4 signature.

mod cli_support;
mod remote_support;

use std::path::{Path, PathBuf};

use remote_support::s3rver::{no_aws_env, S3rver, BUCKET, KEY_ID, SECRET};
use remote_support::{flip_first_byte, lock_text, ok, push_then_pull_computes_nothing, Target};

macro_rules! s3rver_or_skip {
    () => {
        match S3rver::start() {
            Some(server) => server,
            None => {
                eprintln!(
                    "SKIPPED: s3rver is not in tests/s3_server/node_modules (scripts/setup_tests.sh); S3 is untested"
                );
                return;
            }
        }
    };
}

/// The object file s3rver keeps of the only output of the entry of kind `kind`, and
/// the output's digest.
fn blob_of(objects: &Path, kind: &str) -> (PathBuf, String) {
    for entry in std::fs::read_dir(objects.join("ac")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".toml._S3rver_object") {
            continue;
        }
        let m: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if m["kind"].as_str() == Some(kind) {
            let outputs = m["outputs"].as_table().unwrap();
            let digest = outputs.values().next().unwrap()["blake3"].as_str().unwrap().to_string();
            return (objects.join("cas").join(format!("{digest}._S3rver_object")), digest);
        }
    }
    panic!("no {kind} entry in {}", objects.display());
}

#[test]
fn an_s3_remote_serves_a_colleague_who_then_computes_nothing() {
    let server = s3rver_or_skip!();
    let target = server.target("team/difflow");
    let (a, _b) = push_then_pull_computes_nothing(&target);
    // The objects are under the URL's prefix, and S3 lists them.
    assert!(std::fs::read_dir(server.objects("team/difflow/ac")).unwrap().count() > 0);
    let ls = ok(&target.difflow(&a, &["cache", "ls", "--remote"]));
    assert!(ls.contains("s3://difflow-test/team/difflow (5 entries)") && ls.contains("ddpm"), "{ls}");
}

#[test]
fn a_flipped_byte_in_an_s3_object_is_refused_and_the_stage_recomputed() {
    let server = s3rver_or_skip!();
    let target = server.target("cache");
    let a = target.project();
    ok(&target.run(&a, &[]));
    ok(&target.difflow(&a, &["push", "p.diff"]));
    let (object, digest) = blob_of(&server.objects("cache"), "train");
    flip_first_byte(&object);
    let b = target.project();
    let out = target.run(&b, &["--pull"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let url = format!("s3://{BUCKET}/cache/cas/{digest}");
    assert!(
        out.stderr().contains(&format!("{url} (`train.txt`) does not match its digest: refused")),
        "{}",
        out.stderr()
    );
    assert_eq!(b.take_worker_log(), ["ddpm"], "only the refused entry is computed");
    assert!(out.stdout().contains("pulled 4 entries"), "{}", out.stdout());
    assert_eq!(lock_text(&a), lock_text(&b));
}

#[test]
fn two_concurrent_pushes_to_s3_both_succeed() {
    let server = s3rver_or_skip!();
    remote_support::two_concurrent_pushes_both_succeed(&server.target("shared"));
}

#[test]
fn s3_credentials_come_from_the_environment_or_a_profile_and_are_never_printed() {
    let server = s3rver_or_skip!();
    let home = tempfile::tempdir().unwrap();
    // The endpoint from the environment this time, not from `[remote]`.
    let mut target = Target { table: format!("url = \"s3://{BUCKET}/p\"\n"), env: no_aws_env(home.path()) };
    target.env.push(("AWS_ENDPOINT_URL".into(), server.endpoint()));
    let a = target.project();
    ok(&target.run(&a, &[]));

    // None at all: the push says where they are looked for.
    let out = target.difflow(&a, &["push", "p.diff"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains(&format!(
            "remote `s3://{BUCKET}/p`: no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"
        )),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("no profile `default`"), "{}", out.stderr());

    // Keys the server does not know: its refusal, with the object's URL.
    let mut wrong = Target { table: target.table.clone(), env: target.env.clone() };
    wrong
        .env
        .extend([("AWS_ACCESS_KEY_ID".into(), "NOBODY".into()), ("AWS_SECRET_ACCESS_KEY".into(), "s3cret".into())]);
    let out = wrong.difflow(&a, &["push", "p.diff"]);
    assert_eq!(out.code(), 2);
    assert!(out.stderr().contains(&format!("s3://{BUCKET}/p/")), "{}", out.stderr());
    assert!(out.stderr().contains("403 Forbidden"), "{}", out.stderr());
    assert!(!out.stderr().contains("s3cret") && !out.stdout().contains("s3cret"));

    // A named profile of ~/.aws/credentials, as HOME finds it.
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!("[default]\naws_access_key_id = NOBODY\naws_secret_access_key = x\n\n[lab]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let mut profile = Target { table: target.table.clone(), env: target.env.clone() };
    profile.env.push(("AWS_PROFILE".into(), "lab".into()));
    assert!(ok(&profile.difflow(&a, &["push", "p.diff"])).contains("pushed 5 entries"));
    let b = profile.project();
    assert!(ok(&profile.run(&b, &["--pull"])).contains("pulled 5 entries"));
    assert!(b.take_worker_log().is_empty());
    // Without AWS_PROFILE the default profile's unknown key is refused.
    let c = target.project();
    let out = target.difflow(&c, &["pull", "p.diff"]);
    assert_eq!(out.code(), 2);
    assert!(out.stderr().contains("403 Forbidden"), "{}", out.stderr());
}

#[test]
fn a_bad_s3_url_or_endpoint_is_an_error_of_every_command() {
    for (table, message) in [
        ("url = \"s3:///prefix\"\n", "an S3 remote is s3://BUCKET or s3://BUCKET/PREFIX"),
        (
            "url = \"s3://b/p\"\nendpoint = \"ftp://127.0.0.1:1\"\n",
            "the endpoint `ftp://127.0.0.1:1` is no http(s)://HOST[:PORT] address",
        ),
        ("url = \"s3://b/p\"\nendpoint = \"nonsense\"\n", "the endpoint `nonsense` is not a valid URL"),
        (
            "url = \"https://h/p\"\nendpoint = \"http://127.0.0.1:1\"\n",
            "`endpoint` and `region` are settings of s3:// remotes",
        ),
    ] {
        let target = Target { table: table.to_string(), env: no_aws_env(std::env::temp_dir().as_path()) };
        let p = target.project();
        let out = target.difflow(&p, &["plan", "p.diff"]);
        assert_eq!(out.code(), 1, "{table}");
        // Compared without spaces: miette wraps the message in a box.
        let squeezed = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
        assert!(squeezed(&out.stderr()).contains(&squeezed(message)), "{table}: {}", out.stderr());
    }
}
