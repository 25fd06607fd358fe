//! `trellis admin status`.

use crate::output::{format_time, print_json};
use anyhow::Context;
use std::process::ExitCode;
use trellis_sysroot::{Deployment, State, Sysroot};

/// Show the deployments: booted, staged, pending and rollback, with their commit and
/// version (as `ostree admin status`).
///
/// The first deployment is the default boot entry. On the running system, `*` marks the
/// booted deployment.
#[derive(clap::Args)]
pub struct Args {
    /// Print the deployments as JSON.
    #[arg(long)]
    json: bool,
}

fn role(state: &State, i: usize) -> Option<&'static str> {
    let d = &state.deployments[i];
    if d.staged {
        Some("staged")
    } else if state.booted == Some(i) {
        Some("booted")
    } else if state.is_pending(i) {
        Some("pending")
    } else if state.rollback_index() == Some(i) {
        Some("rollback")
    } else if state.booted.is_none() && state.default_deployment().is_some_and(|x| x.same(d)) {
        Some("default")
    } else {
        None
    }
}

fn timestamp(sr: &Sysroot, d: &Deployment) -> Option<u64> {
    sr.repo().load_commit(&d.csum).ok().map(|c| c.timestamp)
}

pub fn run(admin: &super::Args, a: &Args) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let state = trellis_sysroot::load(&sr)
        .with_context(|| format!("reading sysroot {}", admin.sysroot.display()))?;
    if a.json {
        let list: Vec<serde_json::Value> = state
            .deployments
            .iter()
            .enumerate()
            .map(|(i, d)| {
                serde_json::json!({
                    "index": i,
                    "osname": d.osname,
                    "checksum": d.csum.to_hex(),
                    "serial": d.serial,
                    "bootcsum": d.bootcsum,
                    "bootserial": d.bootserial,
                    "version": d.version,
                    "timestamp": timestamp(&sr, d),
                    "origin": d.refspec(),
                    "kargs": d.kargs.to_string(),
                    "path": d.dir(sr.path()),
                    "role": role(&state, i),
                    "booted": state.booted == Some(i),
                    "staged": d.staged,
                    "pending": state.is_pending(i),
                    "rollback": state.rollback_index() == Some(i),
                    "pinned": d.is_pinned(),
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "sysroot": sr.path(),
            "booted_system": state.booted_system,
            "bootversion": state.bootversion,
            "subbootversion": state.subbootversion,
            "deployments": list,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if state.deployments.is_empty() {
        println!("No deployments.");
        return Ok(ExitCode::SUCCESS);
    }
    for (i, d) in state.deployments.iter().enumerate() {
        let mark = if state.booted == Some(i) { '*' } else { ' ' };
        let r = role(&state, i)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        println!("{mark} {} {}{r}", d.osname, d.name());
        if let Some(v) = &d.version {
            match timestamp(&sr, d) {
                Some(t) => println!("    Version: {v} ({})", format_time(t)),
                None => println!("    Version: {v}"),
            }
        }
        match d.refspec() {
            Some(r) => println!("    origin refspec: {r}"),
            None => println!("    origin: none"),
        }
        if !d.kargs.is_empty() {
            println!("    kernel arguments: {}", d.kargs);
        }
        if d.is_pinned() {
            println!("    Pinned: yes");
        }
    }
    Ok(ExitCode::SUCCESS)
}
