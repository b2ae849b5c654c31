//! `assetd completions SHELL` and the man pages the package ships, both
//! generated from the clap definitions so that they cannot drift.

use std::path::Path;

use clap::CommandFactory;

use super::{Cli, EXIT_FAILED, EXIT_OK};

/// Prints the completion script for `shell` on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "assetd", &mut std::io::stdout());
    EXIT_OK
}

/// Writes `assetd.1` and one `assetd-COMMAND.1` per visible subcommand
/// into `dir`.
pub(crate) fn man_pages(dir: &Path) -> u8 {
    match write_man_pages(dir) {
        Ok(count) => {
            println!("wrote {count} man pages to {}", dir.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd generate-man: {}: {e}", dir.display());
            EXIT_FAILED
        }
    }
}

fn write_man_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    command.build();
    let mut pages = vec![("assetd".to_string(), command.clone())];
    add_pages(&command, "assetd", &mut pages);
    for (name, page) in &pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(page.clone()).render(&mut text)?;
        std::fs::write(dir.join(format!("{name}.1")), text)?;
    }
    Ok(pages.len())
}

/// One page per visible subcommand, nested ones included
/// (`assetd-secret-encrypt`), titled as the command is typed.
fn add_pages(parent: &clap::Command, typed: &str, pages: &mut Vec<(String, clap::Command)>) {
    for sub in parent.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let typed = format!("{typed} {}", sub.get_name());
        let name = typed.replace(' ', "-");
        pages.push((name.clone(), sub.clone().name(name).bin_name(typed.clone())));
        add_pages(sub, &typed, pages);
    }
}
