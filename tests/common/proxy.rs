//! A TCP proxy on loopback between an operator and the API server, which a test can cut to
//! play a network partition: connections reset, or connections that hang without an answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the proxy treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Forward both ways.
    None,
    /// Reset every connection, and new ones as soon as they are accepted.
    Reset,
    /// Keep connections open but forward nothing and answer nothing, as a dropped route does.
    Hang,
}

pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<Cut>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, cut_rx) = watch::channel(Cut::None);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, upstream, cut_rx.clone()));
            }
        });
        Proxy { addr, cut, task }
    }

    pub fn cut(&self, how: Cut) {
        self.cut.send_replace(how);
    }

    /// A copy of `kubeconfig` whose clusters point at this proxy, written next to `like`
    /// (the API server's certificate names 127.0.0.1, so TLS still verifies).
    pub fn kubeconfig(&self, kubeconfig: &Path, like: &Path) -> PathBuf {
        let mut config = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
        for cluster in &mut config.clusters {
            if let Some(c) = cluster.cluster.as_mut() {
                c.server = Some(format!("https://{}", self.addr));
            }
        }
        let path = like.with_extension("kubeconfig");
        std::fs::write(&path, serde_yaml::to_string(&config).expect("kubeconfig yaml"))
            .expect("write kubeconfig");
        path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connections end when their tasks see the sender gone.
    }
}

/// The API server's address as the kubeconfig names it (`https://127.0.0.1:<port>`).
pub fn upstream_of(kubeconfig: &Path) -> SocketAddr {
    let config = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let server = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .expect("kubeconfig server");
    let hostport = server.trim_start_matches("https://").trim_end_matches('/');
    hostport
        .parse()
        .unwrap_or_else(|e| panic!("server {server} is not an IP address and port: {e}"))
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<Cut>) {
    let how = *cut.borrow_and_update();
    match how {
        Cut::None => {}
        Cut::Reset => return reset(client),
        Cut::Hang => return hang(client, cut).await,
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let forward = async {
        tokio::select! {
            _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
            _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
        }
    };
    let how = tokio::select! {
        _ = forward => return,
        how = cut.wait_for(|c| *c != Cut::None) => match how {
            Ok(how) => *how,
            Err(_) => return,
        },
    };
    let client = client_read.reunite(client_write).expect("halves of one stream");
    match how {
        Cut::Reset | Cut::None => reset(client),
        // The server side is dropped; the client keeps a connection that never answers.
        Cut::Hang => hang(client, cut).await,
    }
}

/// Closes with RST instead of FIN, as a peer that lost the connection does.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Reads and drops whatever the client sends, never answering, until the proxy goes away.
async fn hang(mut client: TcpStream, mut cut: watch::Receiver<Cut>) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            r = client.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
            changed = cut.changed() => if changed.is_err() { return },
        }
    }
}
