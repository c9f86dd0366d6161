//! An origin that answers every request with a fixed script of raw bytes, for the cases a real
//! server never produces on purpose: closing before the response head, half a head, framing
//! that contradicts itself, silence.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the origin does once it has read a request head.
#[derive(Debug, Clone)]
pub enum Script {
    /// Close the connection without answering.
    Close,
    /// Send these bytes, then close.
    Send(Vec<u8>),
    /// Send the n-th of these to the n-th request (the last one to every later request), then
    /// close.
    SendInTurn(Vec<Vec<u8>>),
    /// Send these bytes, then keep the connection open without sending more.
    SendAndHang(Vec<u8>),
    /// Hold every request until [`ScriptedOrigin::release`], then send these bytes and close.
    SendWhenReleased(Vec<u8>),
    /// Send `first` at once, then hold until [`ScriptedOrigin::release`], then send `rest` and
    /// close: a response that is partly there for as long as a test needs.
    SendRestWhenReleased {
        /// Sent at once (a response head and the start of its body, say).
        first: Vec<u8>,
        /// Sent once released.
        rest: Vec<u8>,
    },
}

/// A running scripted origin; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct ScriptedOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    released: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedOrigin {
    /// Starts answering every request with `script` on a free loopback port.
    pub async fn start(script: Script) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scripted origin");
        let addr = listener.local_addr().expect("bound address");
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (released, release) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            script,
            requests.clone(),
            heads.clone(),
            release,
        ));
        ScriptedOrigin {
            addr,
            requests,
            heads,
            released,
            task,
        }
    }

    /// Lets held requests ([`Script::SendWhenReleased`]) be answered, and later ones at once.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The requests received (heads, and bodies with a `Content-Length`), as text, in arrival
    /// order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads lock").clone()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    script: Script,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    release: tokio::sync::watch::Receiver<bool>,
) {
    // Connections live in the set, so aborting the accept task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                connections.spawn(answer(
                    stream,
                    script.clone(),
                    requests.clone(),
                    heads.clone(),
                    release.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    script: Script,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    mut release: tokio::sync::watch::Receiver<bool>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    // A request body (its `Content-Length`) is read too and kept with the head.
    let head_end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |at| at + 4);
    let declared = String::from_utf8_lossy(&head[..head_end])
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    while head.len() < head_end + declared {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    heads
        .lock()
        .expect("heads lock")
        .push(String::from_utf8_lossy(&head).into_owned());
    let turn = requests.fetch_add(1, Ordering::SeqCst);
    match script {
        Script::Close => {}
        Script::SendInTurn(answers) => {
            if let Some(bytes) = answers.get(turn).or(answers.last()) {
                let _ = stream.write_all(bytes).await;
            }
        }
        Script::Send(bytes) => {
            let _ = stream.write_all(&bytes).await;
        }
        Script::SendWhenReleased(bytes) => {
            if release.wait_for(|released| *released).await.is_ok() {
                let _ = stream.write_all(&bytes).await;
            }
        }
        Script::SendRestWhenReleased { first, rest } => {
            if stream.write_all(&first).await.is_ok()
                && release.wait_for(|released| *released).await.is_ok()
            {
                let _ = stream.write_all(&rest).await;
            }
        }
        Script::SendAndHang(bytes) => {
            let _ = stream.write_all(&bytes).await;
            // Wait for the peer to go away, sending nothing more.
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    }
}
