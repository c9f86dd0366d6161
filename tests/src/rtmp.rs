//! A real nginx-rtmp origin (Debian's `libnginx-mod-rtmp`) whose callbacks go to a hooks
//! service, and an ffmpeg publisher that pushes a test pattern to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::nginx::Nginx;

/// Where Debian installs the RTMP module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running nginx with an `rtmp {}` block: application `live`, callbacks `on_publish`,
/// `on_publish_done`, `on_done` and `on_record_done` to the hooks service, recording every
/// stream into [`RtmpOrigin::record_dir`].
#[derive(Debug)]
pub struct RtmpOrigin {
    nginx: Nginx,
    /// The RTMP address.
    pub rtmp_addr: SocketAddr,
}

impl RtmpOrigin {
    /// Starts nginx-rtmp. `hooks` is the hooks service's base URL (`http://127.0.0.1:PORT`,
    /// nginx-rtmp speaks plain HTTP only); `hook_query` is appended to every hook URL (for
    /// example `?origin=rtmp-a`, or empty).
    pub fn start(hooks: &str, hook_query: &str) -> RtmpOrigin {
        assert!(
            std::path::Path::new(RTMP_MODULE).exists(),
            "{RTMP_MODULE} is missing: install libnginx-mod-rtmp (see .ci/run)"
        );
        let rtmp_addr = crate::free_addr();
        let hook = |event: &str| format!("{hooks}/api/v1/hook/{event}{hook_query}");
        // `record_path` must exist before the first publish; nginx creates neither it nor
        // missing parents, so it lives in the already-created `tmp/` of the prefix.
        let main = format!(
            "load_module {RTMP_MODULE};\n\
             rtmp {{\n\
               server {{\n\
                 listen {rtmp_addr};\n\
                 chunk_size 4096;\n\
                 notify_method post;\n\
                 application live {{\n\
                   live on;\n\
                   on_publish {publish};\n\
                   on_publish_done {publish_done};\n\
                   on_done {done};\n\
                   on_record_done {record_done};\n\
                   record all;\n\
                   record_path {{prefix}}/tmp;\n\
                   record_unique on;\n\
                 }}\n\
               }}\n\
             }}\n",
            publish = hook("on_publish"),
            publish_done = hook("on_publish_done"),
            done = hook("on_done"),
            record_done = hook("on_record_done"),
        );
        // The control module (`/control/drop/publisher?app=…&name=…`) kicks publishers; the
        // stat module (`/stat`) lists the streams with their media, as XML.
        let http = "server {\n listen {listen};\n location = /health { return 200 \"ok\\n\"; }\n \
                    location /control { rtmp_control all; }\n location /stat { rtmp_stat all; }\n}\n";
        let nginx = Nginx::start(&main, http);
        RtmpOrigin { nginx, rtmp_addr }
    }

    /// Waits until both the HTTP and the RTMP listeners accept connections.
    pub async fn ready(&self) {
        self.nginx.ready().await;
        crate::wait_for_listener("nginx-rtmp to listen", self.rtmp_addr).await;
    }

    /// Base URL of the control module (`http://ADDR/control`).
    pub fn control_url(&self) -> String {
        format!("http://{}/control", self.nginx.addr)
    }

    /// URL of the stat module (`http://ADDR/stat`).
    pub fn stat_url(&self) -> String {
        format!("http://{}/stat", self.nginx.addr)
    }

    /// Where recordings are written.
    pub fn record_dir(&self) -> PathBuf {
        self.nginx.prefix().join("tmp")
    }

    /// `rtmp://ADDR/live/{stream_and_query}`.
    pub fn url(&self, stream_and_query: &str) -> String {
        format!("rtmp://{}/live/{stream_and_query}", self.rtmp_addr)
    }

    /// nginx's error log (at `info`, it shows every notify and publish).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.nginx.prefix().join("logs/error.log")).unwrap_or_default()
    }
}

/// An ffmpeg pushing a test pattern to an RTMP URL; killed when dropped.
#[derive(Debug)]
pub struct Publisher {
    child: tokio::process::Child,
}

impl Publisher {
    /// Starts pushing `seconds` of 320x240 test pattern with a sine tone, in real time.
    pub fn start(url: &str, seconds: u32) -> Publisher {
        crate::require_tool("ffmpeg");
        let child = tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ffmpeg");
        Publisher { child }
    }

    /// Waits for ffmpeg to exit, failing the test after `limit`.
    pub async fn finish(mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("ffmpeg finishes in time")
            .expect("wait for ffmpeg")
    }
}
