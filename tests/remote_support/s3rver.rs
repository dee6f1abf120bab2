//! s3rver, an S3-compatible server that keeps objects in files (installed into
//! tests/s3_server/node_modules by scripts/setup_tests.sh), on a free port of 127.0.0.1:
//! the S3 remote of tests/remote_s3.rs and tests/remote_killed_push.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Target;

pub const BUCKET: &str = "difflow-test";
/// s3rver's only account.
pub const KEY_ID: &str = "S3RVER";
pub const SECRET: &str = "S3RVER";

/// The AWS variables a developer's shell may hold, emptied (difflow takes an empty one as
/// unset) so that only what a test gives counts.
pub const AWS_VARS: [&str; 9] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// s3rver with the bucket [`BUCKET`] on a free port of 127.0.0.1, stopped on drop.
pub struct S3rver {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl S3rver {
    pub fn start() -> Option<S3rver> {
        let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_server/node_modules/.bin/s3rver");
        // CI's set-up (scripts/setup_tests.sh) installs s3rver: there a missing one is a failure.
        assert!(
            exe.is_file() || std::env::var_os("CI").is_none(),
            "s3rver is not installed in tests/s3_server/node_modules (scripts/setup_tests.sh installs it with npm)"
        );
        if !exe.is_file() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("s3rver.log")).unwrap();
        let child = Command::new(&exe)
            .args(["-d", "data", "-a", "127.0.0.1", "-p", &port.to_string(), "--configure-bucket", BUCKET])
            .current_dir(dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut server = S3rver { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("s3rver exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "s3rver did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3rver.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder where s3rver keeps the objects under `prefix` of the bucket.
    pub fn objects(&self, prefix: &str) -> PathBuf {
        self.dir.path().join("data").join(BUCKET).join(prefix)
    }

    /// `s3://BUCKET/prefix` with the endpoint in `[remote]` and the keys in the environment.
    pub fn target(&self, prefix: &str) -> Target {
        let table = format!("url = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\n", self.endpoint());
        let mut target = Target { table, env: no_aws_env(std::env::temp_dir().as_path()) };
        target
            .env
            .extend([("AWS_ACCESS_KEY_ID".into(), KEY_ID.into()), ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into())]);
        target
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every AWS variable empty, and a `home` without `.aws` unless the test writes one.
pub fn no_aws_env(home: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = AWS_VARS.iter().map(|v| (v.to_string(), String::new())).collect();
    env.push(("HOME".into(), home.display().to_string()));
    env.push(("AWS_CONFIG_FILE".into(), home.join(".aws/config").display().to_string()));
    env
}
