//! The parts of the benchmark (`bench`) and the soak (`soak`) that both use: the control
//! plane as a client sees it, the operator as a process, and the soak itself.

pub mod cluster;
pub mod operator;
pub mod soak;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Other(String),
}
