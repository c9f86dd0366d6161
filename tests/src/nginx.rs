//! A real nginx, run from a private prefix directory, as the origin livegate sits in front of.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::ChildGuard;

/// A running nginx; stopped (with its workers) when dropped.
#[derive(Debug)]
pub struct Nginx {
    // Declared before `prefix` so the process stops before its directory goes away.
    process: ChildGuard,
    prefix: TempDir,
    /// The HTTP address nginx listens on.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `http_block` as the body of its `http {}` context. In that text,
    /// `{listen}` is replaced by the address to listen on and `{prefix}` by the prefix directory.
    /// `main_block` is added at top level (for `load_module` and an `rtmp {}` context).
    pub fn start(main_block: &str, http_block: &str) -> Nginx {
        crate::require_tool("nginx");
        let prefix = tempfile::Builder::new()
            .prefix("livegate-nginx-")
            .tempdir()
            .expect("create nginx prefix");
        for dir in ["conf", "logs", "tmp"] {
            std::fs::create_dir_all(prefix.path().join(dir)).expect("create nginx dirs");
        }
        let addr = crate::free_addr();
        let root = prefix.path().display().to_string();
        let fill = |text: &str| {
            text.replace("{listen}", &addr.to_string())
                .replace("{prefix}", &root)
        };
        let conf = format!(
            "{main}\n\
             daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n\
             pid {root}/nginx.pid;\nerror_log {root}/logs/error.log info;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log {root}/logs/access.log;\n\
               client_body_temp_path {root}/tmp/client_body;\n\
               proxy_temp_path {root}/tmp/proxy;\n\
               fastcgi_temp_path {root}/tmp/fastcgi;\n\
               uwsgi_temp_path {root}/tmp/uwsgi;\n\
               scgi_temp_path {root}/tmp/scgi;\n\
               include /etc/nginx/mime.types;\n\
               default_type application/octet-stream;\n\
               {http}\n\
             }}\n",
            main = fill(main_block),
            http = fill(http_block),
        );
        let conf_path = prefix.path().join("conf/nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix.path())
            .args(["-c", "conf/nginx.conf", "-e", "logs/error.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        Nginx {
            process: ChildGuard::new("nginx", child),
            prefix,
            addr,
        }
    }

    /// Waits until nginx accepts connections.
    pub async fn ready(&self) {
        crate::wait_for_listener("nginx to listen", self.addr).await;
    }

    /// The prefix directory (config, logs).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// The access log's current contents.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/access.log")).unwrap_or_default()
    }

    /// Path of the access log.
    pub fn access_log_path(&self) -> PathBuf {
        self.prefix.path().join("logs/access.log")
    }

    /// The process id of the nginx master.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `daemon off` keeps the master as our child; TERM makes it take its workers down too,
        // which a SIGKILL of the master alone would not.
        self.process.terminate();
    }
}

/// An `http {}` body that serves `dir` under `/live/` with HLS content types, logging every
/// request line with its query (so tests can assert what reached the origin).
pub fn static_origin(dir: &Path) -> String {
    static_origin_with(dir, "")
}

/// [`static_origin`] with extra directives inside its `server {}` (more `location`s, say).
pub fn static_origin_with(dir: &Path, extra: &str) -> String {
    format!(
        "log_format origin '$request_uri $status $body_bytes_sent xff=$http_x_forwarded_for real=$http_x_real_ip host=$http_host';\n\
         server {{\n\
           listen {{listen}};\n\
           access_log {{prefix}}/logs/origin.log origin;\n\
           location /live/ {{\n\
             alias {dir}/;\n\
             types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; video/iso.segment m4s; video/mp4 mp4; audio/aac aac; video/x-flv flv; }}\n\
             add_header Cache-Control no-cache;\n\
           }}\n\
           location = /health {{ return 200 \"ok\\n\"; }}\n\
           {extra}\n\
         }}\n",
        dir = dir.display()
    )
}

impl Nginx {
    /// Waits until the `origin` log satisfies `check` (nginx writes a line just after the
    /// response goes out, so a client can see the response before the line exists).
    pub async fn wait_for_origin_log(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        crate::wait_until(what, || {
            let log = self.origin_log();
            let ok = check(&log);
            async move { ok.then_some(log) }
        })
        .await
    }

    /// The `origin` log written by [`static_origin`]: one `uri status bytes xff=… real=… host=…` line
    /// per request.
    pub fn origin_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/origin.log")).unwrap_or_default()
    }
}
