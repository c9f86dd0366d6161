//! The README's walkthrough ("From nothing to a paid gift, with curl"), run as written: its
//! shell blocks, in order, against Debian's nginx with the RTMP module on the shipped
//! configuration, `livegate up` on its default ports, ffmpeg, curl, jq and openssl. The blocks
//! run in private network, mount and PID namespaces (`unshare`, as root), so that the default
//! ports and `/srv/nginx` are the walkthrough's own, nothing is left behind, and every process
//! it starts ends with it. What the blocks print is checked against what the README says they
//! print.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livegate_tests::rtmp::RTMP_MODULE;
use livegate_tests::{patience, require_tool, ChildGuard};

const SECTION: &str = "## From nothing to a paid gift, with curl";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `sh` blocks of the README's walkthrough section, in order.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("the README has no `{SECTION}` section"));
    let section = &readme[start + SECTION.len()..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == "```sh" {
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.trim_end() != "```")
                .collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

/// The driver: the namespace's set-up, then the README's blocks (the second, `livegate up`,
/// in the background as in a terminal of its own, waited for until it is ready).
fn driver(blocks: &[String], bin_dir: &Path, up_log: &Path) -> String {
    let [origin, up, rest @ ..] = blocks else {
        panic!("the walkthrough should start with the origin's block and `livegate up`'s");
    };
    assert!(
        up.trim().starts_with("livegate up"),
        "the second block starts livegate: {up}"
    );
    let ready = [9180, 9185, 9190, 9195]
        .map(|port| {
            format!(
                "until curl -sf -o /dev/null http://127.0.0.1:{port}/readyz; do sleep 0.2; done"
            )
        })
        .join("\n");
    let mut script = format!(
        "set -euo pipefail\n\
         ip link set lo up\n\
         mount -t tmpfs livegate-readme /srv\n\
         export PATH={bin}:\"$PATH\"\n\
         echo '@@ origin'\n{origin}\n\
         echo '@@ livegate up'\n({up}) >{log} 2>&1 &\n{ready}\n",
        bin = shell_quote(bin_dir),
        log = shell_quote(up_log),
    );
    for (index, block) in rest.iter().enumerate() {
        script.push_str(&format!("echo '@@ block {}'\n{block}\n", index + 3));
    }
    script.push_str("echo '@@ done'\n");
    script
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    for tool in [
        "unshare", "ip", "mount", "nginx", "ffmpeg", "ffprobe", "curl", "jq", "openssl",
    ] {
        require_tool(tool);
    }
    assert!(
        Path::new(RTMP_MODULE).exists(),
        "{RTMP_MODULE} is missing: install libnginx-mod-rtmp"
    );
    assert!(
        Path::new("/srv").is_dir(),
        "the walkthrough's nginx writes under /srv"
    );
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);

    // A checkout of what the blocks read: the shipped nginx configuration, at its path.
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    std::fs::create_dir_all(checkout.join("infra/nginx-rtmp")).unwrap();
    std::fs::copy(
        workspace().join("infra/nginx-rtmp/nginx.conf"),
        checkout.join("infra/nginx-rtmp/nginx.conf"),
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_livegate")).parent().unwrap();
    let up_log = dir.path().join("up.log");
    let script = dir.path().join("walkthrough.sh");
    std::fs::write(&script, driver(&blocks, bin_dir, &up_log)).unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");

    // --kill-child: when the driver's shell ends (or this test kills it), every process of
    // the PID namespace ends too — nginx, livegate, ffmpeg.
    let child = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "bash",
        ])
        .arg(&script)
        .current_dir(&checkout)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = ChildGuard::new("the walkthrough", child);
    let report = || {
        format!(
            "--- stdout\n{}\n--- stderr\n{}\n--- livegate up\n{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            std::fs::read_to_string(&up_log).unwrap_or_default(),
        )
    };
    let deadline = Instant::now() + patience() * 8;
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the walkthrough did not finish\n{}",
            report()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(
        status.success() && out.contains("@@ done"),
        "the walkthrough failed ({status}); unshare needs root\n{}",
        report()
    );

    println!("{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let has = |line: &str| lines.contains(&line);
    let count = |line: &str| lines.iter().filter(|l| **l == line).count();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("room ") && l.ends_with(" is live")),
        "{}",
        report()
    );
    for expected in [
        "h264",
        "aac",
        "without the token: 403",
        "\"kicked\"",
        "the old key is refused",
        "[\"paid\"]",
        "[{\"username\":\"vera\",\"total\":199}]",
    ] {
        assert!(has(expected), "no `{expected}` line\n{}", report());
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("the publisher was dropped")),
        "the rotation did not drop ffmpeg\n{}",
        report()
    );
    assert_eq!(count("{\"status\":\"paid\"}"), 1, "{}", report());
    assert_eq!(count("{\"status\":\"duplicate\"}"), 2, "{}", report());
}

#[test]
fn the_walkthrough_section_has_the_blocks_the_test_runs() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);
    assert!(blocks.len() >= 4, "{blocks:?}");
    assert!(blocks[0].contains("infra/nginx-rtmp/nginx.conf"));
    assert!(blocks[1].trim().starts_with("livegate up"), "{}", blocks[1]);
}
