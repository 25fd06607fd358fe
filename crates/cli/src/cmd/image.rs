//! `trellis image`: a bootable disk image of a ref's tip.

use crate::RepoArg;
use crate::output::print_json;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use trellis_image::build::{ImageOutcome, ImageProgress, Step};
use trellis_image::size::{human, parse_size};
use trellis_image::{Format, ImageOptions, RemoteSpec, SizeSpec};
use trellis_store::sign::PublicKey;

/// Make a bootable disk image of a ref's tip commit (needs root).
///
/// The disk is GPT with two partitions typed after the Discoverable Partitions
/// Specification: a FAT32 EFI system partition ("esp") holding systemd-boot (taken from the
/// commit's own tree), the kernel, the initramfs and one loader entry with boot counting;
/// and an ext4 root ("root") holding an OSTree-layout sysroot: a bare repository with only
/// that commit, the remote configured (URL and verification key) so that `trellis admin
/// upgrade` works on the device, and one deployment whose origin is REMOTE:REF. The kernel
/// command line is `root=UUID=... rw`, the tree's usr/lib/kernel/cmdline, `panic=10` (so
/// that a failed boot reboots and boot counting can fall back) and --karg.
///
/// Sizes come from the content plus --free unless --size is given. The same commit and
/// options give the same bytes: identifiers derive from the commit, and times are the
/// commit's (or $SOURCE_DATE_EPOCH). No loop devices are used; the image is built next to
/// the output and renamed into place when complete.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The ref whose tip commit goes into the image; the device's origin follows it.
    #[arg(long = "ref", value_name = "REF")]
    ref_name: String,
    #[command(flatten)]
    image: ImageFlags,
}

/// The image options `trellis image` and `trellis build` share.
#[derive(clap::Args, Clone, Debug)]
pub struct ImageFlags {
    /// The image file to write (replaced only once the new one is complete).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Output format: raw (a plain disk image) or qcow2 (converted with qemu-img).
    #[arg(long, default_value = "raw", value_name = "raw|qcow2")]
    pub format: Format,
    /// Total disk size (e.g. 4G), or auto: the content plus --free.
    #[arg(long, default_value = "auto", value_name = "auto|SIZE")]
    pub size: SizeSpec,
    /// Free space on the root file system with --size auto (room for upgrades).
    #[arg(long, default_value = "1G", value_name = "SIZE", value_parser = parse_size)]
    pub free: u64,
    /// Size of the EFI system partition, or auto: three times the kernel and initramfs
    /// plus systemd-boot, at least 256 MiB.
    #[arg(long, default_value = "auto", value_name = "auto|SIZE")]
    pub esp_size: SizeSpec,
    /// Name of the remote the device upgrades from [default: origin; for `build`, the
    /// manifest's remote name].
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// URL of that remote as the device reaches it (http://, https:// or file:///). Required
    /// unless --no-remote (`build` defaults to the manifest's [remote] url).
    #[arg(long, value_name = "URL")]
    pub remote_url: Option<String>,
    /// Commits from the remote must be signed by this ed25519 key: base64 (as printed by
    /// `trellis keygen`) or a file of keys, one per line. Stored inline in the image.
    #[arg(long, value_name = "BASE64|FILE")]
    pub remote_key: Option<String>,
    /// Configure no remote: the origin is the local ref and the device cannot upgrade.
    #[arg(long, conflicts_with_all = ["remote", "remote_url", "remote_key"])]
    pub no_remote: bool,
    /// The stateroot name [default: the commit's OS name, from its subject or os-release,
    /// else debian].
    #[arg(long = "os", value_name = "OS")]
    pub os: Option<String>,
    /// Set a kernel argument, replacing any with the same name, e.g. panic=0 (repeatable).
    #[arg(long = "karg", value_name = "NAME=VALUE")]
    pub karg: Vec<String>,
    /// Append a kernel argument, even if one with that name exists (repeatable).
    #[arg(long = "karg-append", value_name = "NAME=VALUE")]
    pub karg_append: Vec<String>,
    /// Boot counting: a new deployment gets this many tries before systemd-boot falls back
    /// to the previous one (0: off).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub boot_counting_tries: u32,
    /// systemd-boot's menu timeout in seconds (0: no menu unless a key is held).
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub loader_timeout: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--remote-key`: a file of keys, or one base64 key.
fn parse_keys(arg: &str) -> anyhow::Result<Vec<PublicKey>> {
    let p = Path::new(arg);
    if p.is_file() {
        let keys = super::keys::load_public_keys(p)?;
        if keys.is_empty() {
            bail!("--remote-key {arg}: the file holds no key");
        }
        return Ok(keys);
    }
    Ok(vec![
        PublicKey::from_base64(arg, "--remote-key").with_context(|| {
            format!("--remote-key {arg:?} is neither a file nor a base64 ed25519 public key")
        })?,
    ])
}

/// The remote the image is configured with: the flags, else `fallback` (the manifest's),
/// else an error unless --no-remote.
pub(crate) fn resolve_remote(
    f: &ImageFlags,
    fallback: Option<RemoteSpec>,
) -> anyhow::Result<Option<RemoteSpec>> {
    if f.no_remote {
        return Ok(None);
    }
    let mut spec = match (&f.remote_url, fallback) {
        (Some(url), fallback) => RemoteSpec {
            name: fallback
                .as_ref()
                .map_or("origin".into(), |r| r.name.clone()),
            url: url.clone(),
            keys: fallback.map(|r| r.keys).unwrap_or_default(),
        },
        (None, Some(r)) => r,
        (None, None) => bail!(
            "the image needs the URL its devices upgrade from: give --remote-url URL (and \
             --remote-key KEY), or --no-remote for an image that cannot upgrade"
        ),
    };
    if let Some(n) = &f.remote {
        spec.name = n.clone();
    }
    if let Some(k) = &f.remote_key {
        spec.keys = parse_keys(k)?;
    }
    trellis_store::remote::validate_remote_name(&spec.name)?;
    super::remote::validate_url(&spec.url)?;
    Ok(Some(spec))
}

/// The library's options from the flags.
pub(crate) fn options(
    f: &ImageFlags,
    ref_name: &str,
    remote: Option<RemoteSpec>,
    default_os: Option<&str>,
) -> anyhow::Result<ImageOptions> {
    let timestamp = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.trim()
                .parse::<u64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        _ => None,
    };
    Ok(ImageOptions {
        format: f.format,
        size: f.size,
        esp_size: f.esp_size,
        free: f.free,
        remote,
        osname: f.os.clone().or(default_os.map(str::to_string)),
        karg: f.karg.clone(),
        karg_append: f.karg_append.clone(),
        boot_counting_tries: f.boot_counting_tries,
        loader_timeout: f.loader_timeout,
        timestamp,
        ..ImageOptions::new(ref_name, &f.output)
    })
}

/// Step names on stderr, each with its time.
pub(crate) struct Progress {
    current: Mutex<Option<(Step, Instant)>>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            current: Mutex::new(None),
        }
    }

    pub(crate) fn end_step(&self) {
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if let Some((s, started)) = cur.take() {
            eprintln!(
                "image: {} done in {:.1} s",
                s.name(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

impl ImageProgress for Progress {
    fn step(&self, step: Step) {
        self.end_step();
        eprintln!("image: {}...", step.name());
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some((step, Instant::now()));
        }
    }
}

/// Build the image of `ref_name` in `repo`, reporting progress on stderr.
pub(crate) fn build(repo_arg: &RepoArg, opts: &ImageOptions) -> anyhow::Result<ImageOutcome> {
    // Root first: without it, the repository may not even be readable.
    trellis_image::build::check_prerequisites(opts)?;
    let repo = super::open_repo(repo_arg)?;
    let progress = Progress::new();
    let out = trellis_image::build_image(&repo, opts, &progress);
    progress.end_step();
    out.with_context(|| {
        format!(
            "making a disk image of {} from {} at {}",
            opts.ref_name,
            repo_arg.repo.display(),
            opts.output.display()
        )
    })
}

pub(crate) fn to_json(o: &ImageOutcome) -> serde_json::Value {
    serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn print_text(o: &ImageOutcome) {
    let file = if o.file_size != o.disk_size {
        format!(", file {}", human(o.file_size))
    } else {
        String::new()
    };
    println!(
        "image:       {} ({}, {}{file})",
        o.output.display(),
        o.format,
        human(o.disk_size)
    );
    println!(
        "commit:      {} ({}, version {})",
        o.commit,
        o.ref_name,
        o.version.as_deref().unwrap_or("-")
    );
    let remote = match &o.remote_url {
        Some(u) if o.signed_remote => format!(" from {u}, signed commits only"),
        Some(u) => format!(" from {u}, signatures not checked"),
        None => " (no remote: the device cannot upgrade)".to_string(),
    };
    println!("origin:      {}{remote}", o.origin);
    println!("deployment:  {} {}", o.osname, o.deployment);
    println!("kargs:       {}", o.kargs);
    for (i, p) in o.partitions.iter().enumerate() {
        let label = if i == 0 { "partitions:" } else { "" };
        println!(
            "{label:<12} {} {:<4} {:>9}  type {}  uuid {}  {} {}",
            i + 1,
            p.name,
            human(p.size),
            p.type_guid,
            p.uuid,
            p.filesystem,
            p.fs_id
        );
    }
    println!(
        "content:     root {} in {} inodes, ESP {}",
        human(o.root_content.bytes),
        o.root_content.inodes,
        human(o.esp_content)
    );
    let t = &o.timings;
    println!(
        "time:        {:.1} s (deploy {:.1}, root fs {:.1}, ESP {:.1}, convert {:.1})",
        t.total, t.deploy, t.root_fs, t.esp, t.convert
    );
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let remote = resolve_remote(&a.image, None)?;
    let opts = options(&a.image, &a.ref_name, remote, None)?;
    let out = build(&a.repo, &opts)?;
    if a.image.json {
        print_json(&to_json(&out))?;
    } else {
        print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use trellis_image::size::DEFAULT_FREE;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: ImageFlags,
    }

    fn flags(args: &[&str]) -> ImageFlags {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .f
    }

    #[test]
    fn defaults() {
        let f = flags(&["-o", "d.raw"]);
        assert_eq!(f.format, Format::Raw);
        assert_eq!(f.size, SizeSpec::Auto);
        assert_eq!(f.free, DEFAULT_FREE);
        assert_eq!(f.boot_counting_tries, 3);
        assert_eq!(f.loader_timeout, 1);
        let f = flags(&[
            "-o", "d", "--format", "qcow2", "--size", "4G", "--free", "512M",
        ]);
        assert_eq!(f.format, Format::Qcow2);
        assert_eq!(f.size, SizeSpec::Bytes(4 << 30));
        assert_eq!(f.free, 512 << 20);
        assert!(T::try_parse_from(["t", "-o", "d", "--format", "vmdk"]).is_err());
        assert!(T::try_parse_from(["t", "-o", "d", "--size", "lots"]).is_err());
        assert!(
            T::try_parse_from(["t", "-o", "d", "--no-remote", "--remote-url", "http://x"]).is_err()
        );
    }

    #[test]
    fn remotes() {
        let key = trellis_store::sign::SecretKey::generate()
            .unwrap()
            .public()
            .to_base64();
        let err = resolve_remote(&flags(&["-o", "d"]), None).unwrap_err();
        assert!(err.to_string().contains("--remote-url"), "{err}");
        assert!(
            resolve_remote(&flags(&["-o", "d", "--no-remote"]), None)
                .unwrap()
                .is_none()
        );
        let r = resolve_remote(
            &flags(&[
                "-o",
                "d",
                "--remote-url",
                "http://h:1/r",
                "--remote-key",
                &key,
            ]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.url.as_str()),
            ("origin", "http://h:1/r")
        );
        assert_eq!(r.keys.len(), 1);
        let manifest = RemoteSpec {
            name: "updates".into(),
            url: "https://example.org/repo".into(),
            keys: vec![],
        };
        let r = resolve_remote(&flags(&["-o", "d"]), Some(manifest.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(r.name, "updates");
        let r = resolve_remote(
            &flags(&["-o", "d", "--remote", "o2", "--remote-url", "http://x"]),
            Some(manifest),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.name.as_str(), r.url.as_str()), ("o2", "http://x"));
        for bad in [
            &["-o", "d", "--remote-url", "ftp://x"][..],
            &[
                "-o",
                "d",
                "--remote-url",
                "http://x",
                "--remote-key",
                "nope",
            ],
            &["-o", "d", "--remote-url", "http://x", "--remote", "a/b"],
        ] {
            assert!(resolve_remote(&flags(bad), None).is_err(), "{bad:?}");
        }
    }
}
