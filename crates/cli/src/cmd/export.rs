//! `trellis export`: a repository as a deterministic tar archive.

use crate::RepoArg;
use crate::output::print_json;
use crate::progress::Bar;
use anyhow::{Context, bail};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trellis_transport::export::{ExportOptions, ExportReport, export};

/// Write an archive repository as a tar archive (gzip unless the name ends in `.tar`).
///
/// The same repository content always gives the same bytes: entries are sorted, owners,
/// modes and times are fixed, and gzip carries no timestamp. The archive holds a minimal
/// config (repo_version, mode), the objects reachable from the selected refs with their
/// .commitmeta, refs/heads/…, and the summary (with summary.sig) when all refs are exported
/// and the summary is up to date. `tar x` of it gives a usable archive repository;
/// `trellis import` reads it back, verifying everything.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Output file, or `-` for standard output (gzip). Written through a temporary name and
    /// renamed into place, so a failed export leaves no partial file.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// Export only this local ref; repeatable. Default: every local ref.
    #[arg(long = "ref", value_name = "REF")]
    refs: Vec<String>,
    /// Parents to include for each ref: 0 for the ref's commit alone, -1 for all history.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    depth: i64,
    /// Print what was exported as JSON (not with `-o -`).
    #[arg(long)]
    json: bool,
}

/// `--depth`: -1 means all of history.
pub fn parse_depth(depth: i64) -> anyhow::Result<Option<u32>> {
    match depth {
        -1 => Ok(None),
        d if d >= 0 => Ok(Some(u32::try_from(d).unwrap_or(u32::MAX))),
        d => bail!("--depth {d}: use a number of parents, or -1 for all history"),
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let to_stdout = a.output.as_os_str() == "-";
    if to_stdout && a.json {
        bail!("--json cannot be used with -o - (standard output carries the archive)");
    }
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("standard output is a terminal; redirect it (-o - > repo.tar.gz) or give -o FILE");
    }
    let opts = ExportOptions {
        refs: a.refs.clone(),
        depth: parse_depth(a.depth)?,
        gzip: to_stdout || a.output.extension().is_none_or(|e| e != "tar"),
    };
    let bar = Bar::new("exporting");
    let report = if to_stdout {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let r = export(&repo, &opts, &mut out, &bar);
        out.flush().context("writing to standard output")?;
        r?
    } else {
        write_atomically(&a.output, |out| {
            export(&repo, &opts, out, &bar).map_err(anyhow::Error::from)
        })?
    };
    bar.finish();
    if a.json {
        print_json(&report)?;
    } else {
        let line = describe(&report, &a.output);
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(r: &ExportReport, out: &Path) -> String {
    let mut s = format!(
        "exported {} refs, {} commits, {} objects ({:.1} MB) to {}",
        r.refs.len(),
        r.commits,
        r.objects,
        r.object_bytes as f64 / 1e6,
        out.display()
    );
    if r.summary_included {
        s.push_str(", with the summary");
    }
    if let Some(why) = &r.summary_skipped {
        s.push_str(&format!("; summary left out: {why}"));
    }
    s
}

/// Write `path` through a temporary file beside it, renamed into place on success.
fn write_atomically<T>(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let v = f(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(v)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
