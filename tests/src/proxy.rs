//! A TCP proxy that tests can cut, stall and restore, to make PostgreSQL or RabbitMQ
//! unavailable for one test without touching the shared servers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward everything.
    Up,
    /// Close every connection and refuse new ones: the server looks down.
    Cut,
    /// Keep connections open but forward nothing: the server looks hung.
    Stalled,
}

/// Forwards connections to `target`, until told to cut or stall.
pub struct CuttableProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<CuttableProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Up);
        let accept_mode = mode.clone();
        // Sockets held open, unanswered, while stalled.
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                match *accept_mode.borrow() {
                    Mode::Cut => continue, // dropped: the client sees the connection closed
                    Mode::Stalled => {
                        held.lock().expect("held lock").push(inbound);
                        continue;
                    }
                    Mode::Up => {}
                }
                let mut changes = accept_mode.subscribe();
                let held = held.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let stalled = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        mode = changes.wait_for(|m| *m != Mode::Up) => {
                            mode.is_ok_and(|m| *m == Mode::Stalled)
                        }
                    };
                    if stalled {
                        held.lock().expect("held lock").push(inbound);
                    }
                });
            }
        });
        Ok(CuttableProxy { addr, mode, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Stops forwarding but keeps connections open, like a server that hangs.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(Mode::Cut);
    }
}
