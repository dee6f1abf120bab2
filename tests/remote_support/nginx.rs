//! The servers and files of the folder and HTTP remotes' tests: nginx with WebDAV PUT
//! on 127.0.0.1, a remote folder's URL and files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// nginx serving `root` with WebDAV PUT on a free port of 127.0.0.1, stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Nginx {
    /// `auth`: the only user and password it lets in (HTTP Basic), if any.
    pub fn start(auth: Option<(&str, &str)>) -> Option<Nginx> {
        let exe =
            ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"].into_iter().find(|p| Path::new(p).is_file());
        // CI's set-up (scripts/setup_tests.sh) installs nginx: there a missing one is a failure.
        assert!(
            exe.is_some() || std::env::var_os("CI").is_none(),
            "nginx is not installed (Debian package nginx-light, which scripts/setup_tests.sh installs)"
        );
        let exe = exe?;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let auth = match auth {
            Some((user, password)) => {
                std::fs::write(dir.path().join("users"), format!("{user}:{{PLAIN}}{password}\n")).unwrap();
                "auth_basic difflow; auth_basic_user_file users;"
            }
            None => "",
        };
        let conf = format!(
            "pid nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log access.log;\n  \
             client_body_temp_path tmp;\n  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    \
             client_max_body_size 0;\n    location / {{ {auth} dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
            root = root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let prefix = format!("{}/", dir.path().display());
        let child = Command::new(exe)
            .args(["-p", &prefix, "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Nginx { child, port, dir, root };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on 127.0.0.1:{port} within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
