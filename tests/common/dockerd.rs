//! A dockerd of a test's own (its socket, data root, exec root and
//! network namespace), for tests that kill the engine: killing it
//! disturbs no other test.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;

use super::{eventually, CONVERGE};

fn mkdir(path: &Path) {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .unwrap();
}

/// A dockerd of the test's own, on its own socket, data root and exec
/// root and in its own network namespace, so killing it disturbs nobody:
/// no bridge and no iptables rules to fight the shared engine over, its
/// own managed containerd.
pub struct PrivateDockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateDockerd {
    pub fn start(dir: &Path) -> Self {
        mkdir(dir);
        // An empty config: nothing from /etc/docker/daemon.json applies.
        fs::write(dir.join("daemon.json"), "{}").unwrap();
        let mut dockerd = Self {
            dir: dir.to_path_buf(),
            child: None,
        };
        dockerd.spawn();
        dockerd
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("d.sock").display())
    }

    /// The managed containerd a previous dockerd started, while its
    /// process exists (a zombie counts: dockerd's own check counts it).
    fn old_containerd(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.dir.join("x/containerd/containerd.pid")).ok()?;
        pid.trim()
            .parse()
            .ok()
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    pub fn spawn(&mut self) {
        // A dockerd started while its killed predecessor's containerd is
        // still dying (or a zombie not yet reaped) adopts it, loses it and
        // gives up ("timeout waiting for containerd to start"): wait until
        // it is gone, as a real restart would.
        let deadline = Instant::now() + CONVERGE;
        while let Some(pid) = self.old_containerd() {
            assert!(
                Instant::now() < deadline,
                "containerd {pid} of the killed dockerd is still there"
            );
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs = std::env::temp_dir().join("assetd-test-logs");
        fs::create_dir_all(&logs).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("private-dockerd.log"))
            .unwrap();
        let dockerd = if Path::new("/usr/sbin/dockerd").exists() {
            "/usr/sbin/dockerd"
        } else {
            "dockerd"
        };
        // Its own network namespace: with `--bridge=none` dockerd deletes
        // the host's docker0 at start, which would break the shared engine.
        let child = Command::new("unshare")
            .args(["--net", "--", dockerd])
            .arg("--host")
            .arg(self.host())
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("x"))
            .arg("--pidfile")
            .arg(self.dir.join("d.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd (is docker.io installed?)");
        self.child = Some(child);
    }

    pub async fn docker(&self) -> Docker {
        // bollard refuses a unix socket that does not exist yet.
        eventually("the private dockerd to answer", CONVERGE, || async {
            let docker = Docker::connect_with_host(&self.host()).ok()?;
            docker.ping().await.ok()?;
            Some(docker)
        })
        .await
    }

    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("dockerd runs");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        // Containers must go through their engine (their shims outlive a
        // killed dockerd); so bring it back if a failed test left it dead.
        if self.child.is_none() {
            self.spawn();
        }
        let host = self.host();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let Ok(docker) = Docker::connect_with_host(&host) else {
                    return;
                };
                let deadline = Instant::now() + Duration::from_secs(30);
                while docker.ping().await.is_err() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let options = ListContainersOptionsBuilder::default().all(true).build();
                for c in docker
                    .list_containers(Some(options))
                    .await
                    .unwrap_or_default()
                {
                    let force = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker
                        .remove_container(&c.id.unwrap_or_default(), Some(force))
                        .await;
                }
            });
        })
        .join();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever outlived it (shims of containers it could not remove)
        // is ours: its command line names our directory.
        for pid in processes_mentioning(&self.dir) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        // dockerd leaves its data root bind-mounted on itself, and a dead
        // one its containers' overlays: innermost first.
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by(|a, b| b.cmp(a));
        for mount in &mounts {
            let _ = Command::new("umount").arg(mount).status();
        }
        if mounts_under(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("left {} in place: still mounted", self.dir.display());
        }
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_str().unwrap().as_bytes();
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(PathBuf::from))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}
