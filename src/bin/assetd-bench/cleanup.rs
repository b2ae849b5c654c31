//! Removing what the bench created: one container, everything of a
//! figure or run, leftovers of killed runs, and the whole run at the end.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use futures_util::StreamExt;

use crate::bench::Bench;
use crate::{LABEL, PARALLEL, PID_LABEL};

impl Bench {
    /// `docker rm -f`; an error (e.g. already gone) is ignored.
    pub async fn remove_container(&self, name: &str) {
        let _ = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }

    /// Removes the services, then the containers, labelled `key=value`,
    /// `PARALLEL` at a time, and waits until Swarm's task containers are
    /// gone too.
    pub async fn remove_by_label(&self, key: &str, value: &str) {
        let selector = format!("{key}={value}");
        let services = self.services_labelled(&selector).await;
        futures_util::stream::iter(services.into_iter().filter_map(|s| s.id))
            .for_each_concurrent(PARALLEL, |id| async move {
                let _ = self.docker.delete_service(&id).await;
            })
            .await;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let containers = self.containers_labelled(&selector).await;
            if containers.is_empty() || Instant::now() > deadline {
                break;
            }
            futures_util::stream::iter(containers.into_iter().filter_map(|c| c.id))
                .for_each_concurrent(PARALLEL, |id| async move {
                    self.remove_container(&id).await;
                })
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Objects of earlier bench runs whose process is gone (killed before
    /// it could clean up).
    pub async fn clear_leftovers(&self) {
        let mut stale = BTreeSet::new();
        let alive = |pid: &str| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("assetd-bench"))
                .unwrap_or(false)
        };
        let mut consider = |labels: Option<HashMap<String, String>>| {
            let labels = labels.unwrap_or_default();
            if let (Some(pid), Some(rid)) = (labels.get(PID_LABEL), labels.get(LABEL)) {
                if !alive(pid) {
                    stale.insert(rid.clone());
                }
            }
        };
        for c in self.containers_labelled(PID_LABEL).await {
            consider(c.labels);
        }
        for s in self.services_labelled(PID_LABEL).await {
            consider(s.spec.and_then(|s| s.labels));
        }
        for n in self.networks_labelled(PID_LABEL).await {
            consider(n.labels);
        }
        for rid in stale {
            println!("assetd-bench: removing leftovers of bench run {rid}");
            self.remove_by_label(LABEL, &rid).await;
            self.remove_networks(&rid).await;
        }
    }

    /// The networks of run `rid`.
    async fn remove_networks(&self, rid: &str) {
        for n in self.networks_labelled(&format!("{LABEL}={rid}")).await {
            let Some(id) = n.id else { continue };
            // Swarm frees an overlay's endpoints a little after its
            // services go: retry for a while.
            for _ in 0..30 {
                if self.docker.remove_network(&id).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Stops every daemon still alive, removes everything labelled with
    /// this run, and the temporary directory.
    pub async fn cleanup(&self) {
        let pids: Vec<u32> = self
            .daemons
            .lock()
            .expect("daemons")
            .iter()
            .copied()
            .collect();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        self.remove_by_label(LABEL, &self.rid).await;
        self.remove_networks(&self.rid).await;
        if self.args.keep_temp {
            println!("assetd-bench: kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
