//! `trellis sysext`: systemd system extensions, from building one over a base commit to
//! installing it on a device.

use crate::output::print_json;
use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trellis_store::Repo;
use trellis_store::sign::{PublicKey, SecretKey};
use trellis_sysext::build::{BuildOptions, BuildReport};
use trellis_sysext::check::CheckReport;
use trellis_sysext::device::{Device, InstallOptions};
use trellis_sysext::fetch::{HttpOptions, Source};
use trellis_sysext::matching::HostOs;
use trellis_sysext::{Format, base, check, image, inspect, publish};

/// Build, check, publish and install systemd system extensions (sysext).
///
/// An extension is a directory or a raw erofs/squashfs image holding files for /usr and
/// /opt, plus usr/lib/extension-release.d/extension-release.NAME saying which OS it is
/// for. `systemd-sysext` merges the extensions in /var/lib/extensions (and /etc and /run)
/// over /usr and /opt when their ID and VERSION_ID (or SYSEXT_LEVEL) match the OS's
/// os-release. See docs/sysext.md.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(BuildArgs),
    Inspect(InspectArgs),
    Check(CheckArgs),
    Publish(PublishArgs),
    List(ListArgs),
    Install(InstallArgs),
    Remove(RemoveArgs),
    Status(StatusArgs),
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        Command::Build(a) => build(a),
        Command::Inspect(a) => inspect_cmd(a),
        Command::Check(a) => check_cmd(a),
        Command::Publish(a) => publish_cmd(a),
        Command::List(a) => list(a),
        Command::Install(a) => install(a),
        Command::Remove(a) => remove(a),
        Command::Status(a) => status(a),
    }
}

/// Where raw images are unpacked to be read (on disk: images can be large).
/// Where images are unpacked for inspection: $TMPDIR, else /var/tmp (not /tmp, which is
/// often a small tmpfs).
pub(crate) fn scratch() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("{s:?} is not a format: use dir, erofs or squashfs"))
}

/// Build an extension from Debian packages over a base commit (needs root).
///
/// The commit is checked out, the packages are installed over it with apt in a chroot on
/// an overlay (in a private mount namespace), and what they add under /usr and /opt
/// becomes the extension. Files they change or delete in the base, configuration in
/// /etc, the dpkg database and anything outside /usr and /opt are left out, and listed.
/// The extension-release file gets ID, VERSION_ID (and SYSEXT_LEVEL) from the base's
/// os-release and its architecture, so the extension merges on that OS release. Same
/// inputs give the same bytes: every timestamp is the base commit's.
#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    repo: crate::RepoArg,
    /// The base commit: a ref or a checksum.
    #[arg(long = "ref", value_name = "REF")]
    rev: String,
    /// The extension's name: the image is NAME.raw (or the directory NAME).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Debian packages to install, comma-separated (name, name=version or name/suite).
    #[arg(long, value_name = "PKG,...", value_delimiter = ',', required = true)]
    packages: Vec<String>,
    /// Where to write it: a directory (NAME.raw or NAME goes inside), or the image path.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// dir (a directory tree), erofs or squashfs (raw images).
    #[arg(long, default_value = "erofs", value_parser = parse_format, value_name = "FORMAT")]
    format: Format,
    /// SYSEXT_VERSION_ID [default: the base's version and a digest of the packages].
    #[arg(long = "version", value_name = "VERSION")]
    version: Option<String>,
    /// Where downloaded .deb files are kept between runs, shared with `trellis compose`
    /// [default: /var/cache/trellis/debs for root].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Where the checkout and the overlay are made (needs room for the base tree).
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    workdir: PathBuf,
    /// Show apt's output.
    #[arg(long, short)]
    verbose: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    // Refuse a bad name before touching anything.
    trellis_sysext::name::validate_name(&a.name)?;
    let repo = super::open_repo(&a.repo)?;
    let opts = BuildOptions {
        rev: a.rev.clone(),
        name: a.name.clone(),
        packages: a.packages.clone(),
        output: a.output.clone(),
        format: a.format,
        version: a.version.clone(),
        cache: a
            .cache
            .clone()
            .unwrap_or_else(trellis_compose::rootfs::default_cache_dir),
        workdir: a.workdir.clone(),
    };
    let verbose = a.verbose;
    let r = trellis_sysext::build::build(&repo, &opts, &mut |line| {
        if verbose {
            eprintln!("  {line}");
        }
    })
    .with_context(|| format!("building extension {:?} on {}", a.name, a.rev))?;
    if a.json {
        print_json(&r)?;
    } else {
        print_build(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_build(r: &BuildReport) {
    for d in r.warnings() {
        eprintln!("warning: left out {}: {}", d.path, d.reason.describe());
    }
    println!(
        "built {} ({}) {} version {}",
        r.output.display(),
        r.format.as_str(),
        r.name,
        r.version
    );
    println!(
        "  for {} (base commit {})",
        inspect::describe_target(&r.release),
        r.base.commit
    );
    let pkgs: Vec<String> = r
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    println!("  packages: {}", pkgs.join(", "));
    println!(
        "  {} files, {} symlinks, {} directories; {:.1} MB of content, image {:.1} MB",
        r.files,
        r.symlinks,
        r.dirs,
        r.content_bytes as f64 / 1e6,
        r.size as f64 / 1e6
    );
    if !r.not_packaged.is_empty() {
        println!(
            "  not from any package's file list (made by maintainer scripts): {}",
            r.not_packaged.join(", ")
        );
    }
    let t = &r.timings;
    println!(
        "  {:.1}s (checkout {:.1}s, install {:.1}s, collect {:.1}s, pack {:.1}s)",
        t.total, t.checkout, t.install, t.collect, t.pack
    );
}

/// Show an extension image: its name, release data, files, and the OS it is for.
///
/// IMG is a directory or a raw erofs/squashfs image; raw images are unpacked into a
/// temporary directory under /var/tmp (unsquashfs or fsck.erofs, which check every block)
/// rather than mounted.
#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(value_name = "IMG")]
    image: PathBuf,
    /// Leave out the file list.
    #[arg(long)]
    no_files: bool,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

fn inspect_cmd(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut i = inspect::inspect(&a.image, &scratch())
        .with_context(|| format!("inspecting {}", a.image.display()))?;
    if a.no_files {
        i.files.clear();
    }
    if a.json {
        print_json(&i)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "image:   {} ({}, {} bytes)",
        i.image,
        i.format.as_str(),
        i.size
    );
    println!("name:    {}", i.name.as_deref().unwrap_or("(none)"));
    match &i.release {
        Some(r) => {
            println!("for:     {}", i.matches.as_deref().unwrap_or("(unknown)"));
            println!("release:");
            for (k, v) in r.fields() {
                println!("  {k}={v}");
            }
        }
        None => println!("release: (none)"),
    }
    for p in &i.problems {
        println!("problem: {}", p.message);
    }
    if !a.no_files {
        println!("files:");
        for f in &i.files {
            println!("  {}", f.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Say whether an image would be merged by systemd-sysext on a commit (or a root), and if
/// not, why.
///
/// The checks, in order: the image's name (no path separators; systemd 252 needs
/// NAME.raw with usr/lib/extension-release.d/extension-release.NAME inside), no
/// usr/lib/os-release in it, nothing outside /usr and /opt; then systemd-sysext 252's
/// matching rules against the OS's os-release: SYSEXT_SCOPE, ARCHITECTURE, ID,
/// SYSEXT_LEVEL or VERSION_ID. Exits 0 when it would merge, 1 when not.
#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(value_name = "IMG")]
    image: PathBuf,
    /// Repository holding the commit to check against. Defaults to $TRELLIS_REPO.
    #[arg(long, env = "TRELLIS_REPO", value_name = "PATH", requires = "rev")]
    repo: Option<PathBuf>,
    /// The commit (ref or checksum) to check against.
    #[arg(long = "ref", value_name = "REF", requires = "repo")]
    rev: Option<String>,
    /// Check against the OS in this root directory instead (its os-release, this
    /// machine's architecture).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["repo", "rev"])]
    root: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn check_cmd(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let os: HostOs = match (&a.repo, &a.rev, &a.root) {
        (Some(repo), Some(rev), _) => {
            let repo = Repo::open(repo)
                .with_context(|| format!("opening repository {}", repo.display()))?;
            base::read(&repo, rev)
                .with_context(|| format!("reading commit {rev}"))?
                .host()
        }
        (_, _, Some(root)) => Device::new(root).host()?,
        _ => bail!("give the OS to check against: --repo R --ref REF, or --root DIR"),
    };
    let img = image::open(&a.image, &scratch())
        .with_context(|| format!("reading {}", a.image.display()))?;
    let r = check::check(&img, &os)?;
    if a.json {
        print_json(&r)?;
    } else {
        print_check(&r);
    }
    Ok(if r.merges {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_check(r: &CheckReport) {
    let name = r.findings.name.as_deref().unwrap_or("?");
    if r.merges {
        let why = r.verdict.as_ref().map(|v| v.reason()).unwrap_or("");
        println!("{name}: merges on {}: {why}", r.os.describe());
        return;
    }
    println!("{name}: would NOT merge on {}:", r.os.describe());
    for reason in r.reasons() {
        println!("  - {reason}");
    }
}

/// Publish extension images beside a published repository, in DEST/extensions/.
///
/// Each image (raw, named NAME.raw, with SYSEXT_VERSION_ID in its release file) is
/// checked, then copied as NAME_VERSION.raw with its release file as NAME_VERSION.release.
/// The index SHA256SUMS (sha256sum format, as systemd-sysupdate reads it) is signed with
/// the ed25519 key into SHA256SUMS.ed25519, and written last, atomically. A version never
/// changes once published. DEST is the directory `trellis publish` writes the repository
/// to; `trellis serve --dir extensions=DEST/extensions` serves them.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// Images, then the destination directory.
    #[arg(value_name = "IMG... DEST", required = true, num_args = 2..)]
    paths: Vec<PathBuf>,
    /// The ed25519 secret key (from `trellis keygen`) that signs the index; devices check
    /// it with the remote's verification key.
    #[arg(long, value_name = "FILE")]
    sign_key: PathBuf,
    /// Print what was published as JSON.
    #[arg(long)]
    json: bool,
}

fn publish_cmd(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let Some((dest, images)) = a.paths.split_last() else {
        bail!("give IMG... DEST");
    };
    let key = SecretKey::from_file(&a.sign_key)
        .with_context(|| format!("loading secret key {}", a.sign_key.display()))?;
    let r = publish::publish(images, dest, &key, &scratch())
        .with_context(|| format!("publishing to {}", dest.display()))?;
    if a.json {
        print_json(&r)?;
    } else {
        for p in &r.images {
            println!(
                "{} {} {}",
                if p.uploaded { "published" } else { "unchanged" },
                r.dir.join(&p.file).display(),
                p.sha256
            );
        }
        println!(
            "{} entries in {}",
            r.entries,
            r.dir.join("SHA256SUMS").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Options naming the system to manage.
#[derive(clap::Args, Clone)]
struct RootArg {
    /// The root of the system whose extensions are managed: /var/lib/extensions and the
    /// os-release are read under it, and `systemd-sysext --root` is used when not /.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
}

/// Options naming where extensions come from.
#[derive(clap::Args, Clone)]
struct RemoteArgs {
    /// The sysroot whose repository (ostree/repo) configures the remote.
    #[arg(long, default_value = "/", value_name = "DIR")]
    sysroot: PathBuf,
    /// The remote to use [default: the only one configured].
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    remote: Option<String>,
    /// Use this repository URL instead of a configured remote (its extensions are under
    /// URL/extensions/); needs --key.
    #[arg(long, value_name = "URL", requires = "keys")]
    url: Option<String>,
    /// A trusted ed25519 public key (base64, or a file of keys); repeatable.
    #[arg(long = "key", value_name = "KEY|FILE")]
    keys: Vec<String>,
}

impl RemoteArgs {
    fn source(&self) -> anyhow::Result<Source> {
        let mut keys = Vec::new();
        for k in &self.keys {
            let p = Path::new(k);
            let parsed = if p.is_file() {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading key file {}", p.display()))?;
                PublicKey::list_from_text(&text, k)
            } else {
                PublicKey::from_base64(k, "--key").map(|k| vec![k])
            };
            keys.extend(parsed.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        if let Some(url) = &self.url {
            return Ok(Source::new(url, keys, &HttpOptions::default())?);
        }
        let repo_path = self.sysroot.join("ostree/repo");
        let repo = Repo::open(&repo_path).with_context(|| {
            format!(
                "opening the sysroot repository {} for its remote (or give --url and --key)",
                repo_path.display()
            )
        })?;
        let name = match &self.remote {
            Some(n) => n.clone(),
            None => match repo.remote_names().as_slice() {
                [only] => only.clone(),
                [] => bail!(
                    "{} has no remote configured; give --url URL --key KEY",
                    repo_path.display()
                ),
                many => bail!(
                    "several remotes are configured ({}): give --remote NAME",
                    many.join(", ")
                ),
            },
        };
        let remote = repo.remote(&name)?;
        if keys.is_empty() {
            Ok(Source::from_remote(&remote)?)
        } else {
            Ok(Source::new(&remote.url, keys, &HttpOptions::default())?)
        }
    }
}

/// List the extensions the remote publishes, and which versions match this system.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    root: RootArg,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let source = a.remote.source()?;
    let os = Device::new(&a.root.root).host()?;
    let all = trellis_sysext::device::available(&source, &os)
        .with_context(|| format!("listing {}", source.url))?;
    if a.json {
        print_json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no extensions published at {}", source.url);
    }
    for v in &all {
        println!(
            "{:<20} {:<24} {}",
            v.name,
            v.version,
            if v.verdict.matches() {
                "matches".to_string()
            } else {
                format!("does not match: {}", v.verdict.reason())
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Download, verify and install an extension, then run `systemd-sysext refresh`.
///
/// The remote's signed index (SHA256SUMS and SHA256SUMS.ed25519) must verify with the
/// remote's ed25519 key; the newest version whose release file matches this system's
/// os-release is chosen (or NAME@VERSION), downloaded next to /var/lib/extensions/NAME.raw,
/// checked against its SHA-256, and renamed into place. Nothing is installed when any
/// check fails.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// NAME or NAME@VERSION.
    #[arg(value_name = "NAME[@VERSION]")]
    spec: String,
    #[command(flatten)]
    root: RootArg,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Do not run `systemd-sysext refresh` afterwards.
    #[arg(long)]
    no_refresh: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn install(a: InstallArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = trellis_sysext::name::parse_spec(&a.spec)?;
    let source = a.remote.source()?;
    let dev = Device::new(&a.root.root);
    let r = dev
        .install(
            &source,
            &InstallOptions {
                name: name.clone(),
                version,
                os: None,
                refresh: !a.no_refresh,
            },
        )
        .with_context(|| format!("installing extension {name} from {}", source.url))?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "installed {} {} as {}{}",
        r.name,
        r.version,
        r.path.display(),
        r.replaced
            .as_ref()
            .map(|v| format!(" (replacing {v})"))
            .unwrap_or_default()
    );
    println!("  {}", r.matches);
    if !r.refreshed {
        println!("  not merged yet: run systemd-sysext refresh");
    }
    Ok(ExitCode::SUCCESS)
}

/// Remove an extension trellis installed, then run `systemd-sysext refresh`.
#[derive(clap::Args)]
pub struct RemoveArgs {
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    root: RootArg,
    /// Do not run `systemd-sysext refresh` afterwards.
    #[arg(long)]
    no_refresh: bool,
}

fn remove(a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let p = Device::new(&a.root.root)
        .remove(&a.name, !a.no_refresh)
        .with_context(|| format!("removing extension {}", a.name))?;
    println!("removed {}", p.display());
    Ok(ExitCode::SUCCESS)
}

/// Show the installed extensions and whether each matches this system's os-release.
///
/// Lists the images in /etc/extensions, /run/extensions, /var/lib/extensions,
/// /usr/lib/extensions and /usr/local/lib/extensions (systemd-sysext 252's search order:
/// the first image of a name hides the others).
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    root: RootArg,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let dev = Device::new(&a.root.root);
    let os = dev.host()?;
    let all = dev.installed(Some(&os), &scratch())?;
    if a.json {
        print_json(&serde_json::json!({ "os": os, "extensions": all }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("os: {}", os.describe());
    if all.is_empty() {
        println!("no extensions installed");
    }
    for i in &all {
        let state = match &i.verdict {
            Some(v) if v.matches() => "matches".to_string(),
            Some(v) => format!("DOES NOT MATCH: {}", v.reason()),
            None => format!(
                "unknown: {}",
                i.note.as_deref().unwrap_or("no release data")
            ),
        };
        println!(
            "{:<20} {:<24} {} ({}{})",
            i.name,
            i.version.as_deref().unwrap_or("-"),
            state,
            i.path.display(),
            if i.managed {
                ", installed by trellis"
            } else {
                ""
            }
        );
        for s in &i.shadows {
            println!("{:<20} hides {}", "", s.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
