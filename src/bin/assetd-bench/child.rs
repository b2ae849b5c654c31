//! Short-lived helper processes (the docker CLI, `xargs`, `assetd apply`):
//! spawned with their stderr kept for error messages, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Bench;

impl Bench {
    /// The docker CLI with `argv`, talking to the engine directly.
    pub fn cli_command(&self, argv: &[&str]) -> Result<ChildGuard> {
        let mut cmd = Command::new(&self.cli);
        cmd.args(argv)
            .env("DOCKER_HOST", &self.engine_host)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.spawn_logged(cmd)
    }

    /// Spawns `cmd` with its stderr in a file of the temporary directory
    /// (a pipe nobody reads would block a chatty child once full).
    pub fn spawn_logged(&self, mut cmd: Command) -> Result<ChildGuard> {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let log = self.root.join(format!(
            "child-{}.err",
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        let child = cmd
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(ChildGuard {
            child: Some(child),
            log,
        })
    }
}

/// A child process killed when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    /// Where its stderr goes.
    log: PathBuf,
}

impl ChildGuard {
    /// Waits for a zero exit; the error carries its stderr.
    pub async fn wait_ok(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("a child");
        loop {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                let err = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("exited with {status}: {}", err.trim());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("did not finish within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
