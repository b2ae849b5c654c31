//! Parse + plan in-process: how the cost of loading and planning grows
//! from 1 000 to 10 000 manifests (no Docker involved).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::bench::Bench;
use crate::report::Row;
use crate::stats::median;

impl Bench {
    /// `load_dir` + `plan` (empty applied and actual) in-process, 1 000
    /// vs 10 000 manifest files.
    pub async fn fig_parse_plan(&self) -> Result<()> {
        let (small_n, big_n) = (self.sizes.parse_small, self.sizes.parse_big);
        let small = self.root.join("parse-small");
        let big = self.root.join("parse-big");
        for (dir, n) in [(&small, small_n), (&big, big_n)] {
            write_parse_manifests(dir, n)?;
        }
        let (mut s, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.sizes.parse_runs {
            let (small, big) = (small.clone(), big.clone());
            // Alternate which size goes first; off the async workers, as
            // it is CPU-bound.
            let (ts, tb) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
                if run % 2 == 0 {
                    let ts = time_parse_plan(small, small_n)?;
                    Ok((ts, time_parse_plan(big, big_n)?))
                } else {
                    let tb = time_parse_plan(big, big_n)?;
                    Ok((time_parse_plan(small, small_n)?, tb))
                }
            })
            .await??;
            if run == 0 {
                continue; // Page cache and allocator warm-up.
            }
            println!(
                "   run {run}: {small_n} files {:.1} ms, {big_n} files {:.1} ms ({:.1}×)",
                ts * 1e3,
                tb * 1e3,
                tb / ts
            );
            s.push(ts);
            b.push(tb);
            ratios.push(tb / ts);
        }
        let (ms, mb, r) = (median(&s), median(&b), median(&ratios));
        println!("   parse + plan: {small_n} files median {:.1} ms, {big_n} files median {:.1} ms, ratio {r:.1}×", ms * 1e3, mb * 1e3);
        self.report.add(Row {
            figure: format!("parse + plan of {big_n} manifests vs {small_n}"),
            assetd: format!("{:.0} ms", mb * 1e3),
            baseline: format!("{:.0} ms", ms * 1e3),
            ratio: format!("{r:.1}×"),
            target: "< 1 s; ≤ 11×".into(),
            met: Some(mb < 1.0 && r <= 11.0),
        });
        Ok(())
    }
}

/// `n` manifests in `dir`, with the modes assetd's permission check wants.
fn write_parse_manifests(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for i in 0..n {
        let path = dir.join(format!("asset-{i:05}.yaml"));
        std::fs::write(&path, parse_manifest(i))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Seconds to load `dir` and plan it from nothing; an error unless all
/// `n` manifests loaded and each got an action.
fn time_parse_plan(dir: PathBuf, n: usize) -> Result<f64> {
    let options = assetd::input::desired::LoadOptions {
        policy: Default::default(),
        check_permissions: true,
        age: Default::default(),
        version_key: None,
    };
    let started = Instant::now();
    let desired = assetd::input::desired::load_dir(&dir, &options, &|k| std::env::var(k).ok());
    let plan = assetd::core::plan::plan(
        &desired,
        &BTreeMap::new(),
        &[],
        &assetd::core::plan::PlanConfig::default(),
    );
    let elapsed = started.elapsed().as_secs_f64();
    if desired.assets.len() != n || plan.actions.len() != n {
        bail!(
            "{}: {} assets, {} actions, {} errors (first: {:?}); expected {n}",
            dir.display(),
            desired.assets.len(),
            plan.actions.len(),
            desired.errors().len(),
            desired.errors().first().map(ToString::to_string)
        );
    }
    Ok(elapsed)
}

/// A realistic manifest for the parse benchmark: command, env, ports,
/// resources, labels.
fn parse_manifest(i: usize) -> String {
    format!(
        "# asset {i}\napiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: asset-{i:05}\n  labels: {{ zone: cell-{}, line: \"{}\" }}\nspec:\n  image: ghcr.io/example/mtcagent:2.5\n  command: \"mtcagent run /etc/agent-{i}.cfg --verbose\"\n  env:\n    - MTC_AGENT_UUID=CNC-{i:05}\n    - LOG_LEVEL=info\n  ports: {{ {}: 5000 }}\n  resources:\n    limits: {{ cpus: 1.0, memory: 512Mi }}\n    reservations: {{ cpus: 0.25, memory: 64Mi }}\n  mode: {{ replicated: {{ replicas: 1 }} }}\n",
        i % 7,
        i % 3,
        20000 + i
    )
}
