//! `build_image`: from a ref in a repository to a finished disk image file.
//!
//! Everything happens in a hidden staging directory next to the output (same file system):
//! the sysroot tree, the ESP tree and the disk file itself, which is renamed over the output
//! only when complete. The staging directory is removed whatever happens, so a failure
//! leaves nothing behind.

use crate::error::{ImageError, IoContext, Result};
use crate::ext4::{self, Ext4};
use crate::fat::{self, Fat};
use crate::fsutil::{self, Staging};
use crate::gpt::{self, Gpt, Guid, Partition};
use crate::ids::{IdsReport, ImageIds};
use crate::size::{self, Plan, SizeSpec, Usage};
use crate::source::{self, Source};
use crate::stage::{self, RemoteSpec, StageOptions};
use serde::Serialize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use trellis_store::Repo;
use trellis_tools::Tool;
use trellis_transport::pull::{NoProgress, PullProgress};

/// The staging directory's parts.
pub const ROOT_DIR: &str = "root";
pub const ESP_DIR: &str = "esp";
const HOST_DIR: &str = "host";
const DISK_FILE: &str = "disk.raw";
const QCOW2_FILE: &str = "disk.qcow2";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Raw,
    Qcow2,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            _ => Err(format!("{s:?}: the formats are raw and qcow2")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        })
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// The ref whose tip goes into the image; the origin follows it.
    pub ref_name: String,
    pub output: PathBuf,
    pub format: Format,
    /// Total disk size, or `Auto`: content plus `free`.
    pub size: SizeSpec,
    pub esp_size: SizeSpec,
    /// Free space on the root with `size: Auto`.
    pub free: u64,
    /// None: no remote; the origin is the local ref.
    pub remote: Option<RemoteSpec>,
    pub osname: Option<String>,
    /// Kernel arguments replacing those with the same name.
    pub karg: Vec<String>,
    /// Kernel arguments appended.
    pub karg_append: Vec<String>,
    /// 0 turns boot counting off.
    pub boot_counting_tries: u32,
    pub loader_timeout: u32,
    /// Every timestamp in the image; default: the commit's.
    pub timestamp: Option<u64>,
}

impl ImageOptions {
    pub fn new(ref_name: &str, output: &Path) -> ImageOptions {
        ImageOptions {
            ref_name: ref_name.to_string(),
            output: output.to_path_buf(),
            format: Format::Raw,
            size: SizeSpec::Auto,
            esp_size: SizeSpec::Auto,
            free: size::DEFAULT_FREE,
            remote: None,
            osname: None,
            karg: Vec::new(),
            karg_append: Vec::new(),
            boot_counting_tries: 3,
            loader_timeout: 1,
            timestamp: None,
        }
    }
}

/// The steps, in order, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the commit.
    Inspect,
    /// Copying the commit into the image's repository and deploying it.
    Deploy,
    /// Measuring the trees and planning the partitions.
    Plan,
    /// mkfs.ext4 with the sysroot.
    RootFs,
    /// mkfs.fat and mcopy.
    Esp,
    /// qemu-img convert.
    Convert,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Inspect => "inspect",
            Step::Deploy => "deploy",
            Step::Plan => "plan",
            Step::RootFs => "root file system",
            Step::Esp => "ESP",
            Step::Convert => "convert",
        }
    }
}

/// Progress reports; called from the building thread (the pull's from worker threads).
pub trait ImageProgress: Sync {
    fn step(&self, _step: Step) {}
    fn pull_progress(&self) -> &dyn PullProgress {
        &NoProgress
    }
}

pub struct NoImageProgress;
impl ImageProgress for NoImageProgress {}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionReport {
    pub name: String,
    pub type_guid: String,
    pub uuid: String,
    pub offset: u64,
    pub size: u64,
    pub filesystem: &'static str,
    /// The file system's UUID (ext4) or volume ID (FAT).
    pub fs_id: String,
}

/// Seconds per step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub deploy: f64,
    pub plan: f64,
    pub root_fs: f64,
    pub esp: f64,
    pub convert: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageOutcome {
    pub output: PathBuf,
    pub format: Format,
    /// The disk's size as the machine sees it.
    pub disk_size: u64,
    /// The output file's length.
    pub file_size: u64,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    pub version: Option<String>,
    pub osname: String,
    pub origin: String,
    pub remote_url: Option<String>,
    pub signed_remote: bool,
    pub kargs: String,
    pub deployment: String,
    pub timestamp: u64,
    pub ids: IdsReport,
    pub partitions: Vec<PartitionReport>,
    pub root_content: Usage,
    pub esp_content: u64,
    pub timings: Timings,
}

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// The partition table of `plan`.
pub fn partition_table(plan: &Plan, ids: &ImageIds) -> Gpt {
    let part = |type_guid: Guid, guid: Guid, offset: u64, size: u64, name: &str| Partition {
        type_guid,
        guid,
        first_lba: offset / gpt::SECTOR,
        last_lba: (offset + size) / gpt::SECTOR - 1,
        attributes: 0,
        name: name.to_string(),
    };
    Gpt {
        disk_guid: ids.disk,
        sectors: plan.disk / gpt::SECTOR,
        partitions: vec![
            part(
                gpt::TYPE_ESP,
                ids.esp_partition,
                plan.esp_offset,
                plan.esp,
                "esp",
            ),
            part(
                gpt::TYPE_ROOT_X86_64,
                ids.root_partition,
                plan.root_offset,
                plan.root,
                "root",
            ),
        ],
    }
}

/// A sparse file of the disk's size with the partition table in place.
fn write_disk(path: &Path, table: &Gpt) -> Result<()> {
    let f = std::fs::File::create(path).ctx("create", path)?;
    f.set_len(table.sectors * gpt::SECTOR).ctx("size", path)?;
    f.write_all_at(&table.primary()?, 0).ctx("write", path)?;
    f.write_all_at(&table.backup()?, table.backup_offset())
        .ctx("write", path)?;
    f.sync_all().ctx("sync", path)
}

fn check_output(output: &Path) -> Result<PathBuf> {
    if output.file_name().is_none() {
        return Err(ImageError::Invalid(format!(
            "output {}: names no file",
            output.display()
        )));
    }
    if output.is_dir() {
        return Err(ImageError::Invalid(format!(
            "output {} is a directory; give the image file's name",
            output.display()
        )));
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(ImageError::Invalid(format!(
            "output directory {} does not exist",
            parent.display()
        )));
    }
    Ok(parent)
}

/// What can be checked before anything is done (`trellis build` checks it before its
/// compose): root, the tools, the output's directory.
pub fn check_prerequisites(opts: &ImageOptions) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(ImageError::NotRoot);
    }
    let mut tools = vec!["mkfs.ext4", "dumpe2fs", "debugfs", "mkfs.fat", "mcopy"];
    if opts.format == Format::Qcow2 {
        tools.push("qemu-img");
    }
    trellis_tools::require(&tools)?;
    check_output(&opts.output)?;
    Ok(())
}

/// Build the image of `opts.ref_name` from `repo` at `opts.output`.
pub fn build_image(
    repo: &Repo,
    opts: &ImageOptions,
    progress: &dyn ImageProgress,
) -> Result<ImageOutcome> {
    let start = Instant::now();
    let mut t = Timings::default();
    check_prerequisites(opts)?;
    let parent = check_output(&opts.output)?;

    progress.step(Step::Inspect);
    let src: Source = source::inspect(repo, &opts.ref_name, opts.osname.as_deref())?;
    let timestamp = opts.timestamp.unwrap_or(src.timestamp);
    let ids = ImageIds::for_commit(&src.commit.to_hex());

    let staging = Staging::new_in(&parent)?;
    let root = staging.path().join(ROOT_DIR);
    let esp = staging.path().join(ESP_DIR);
    let host = staging.path().join(HOST_DIR);

    progress.step(Step::Deploy);
    let step = Instant::now();
    let staged = stage::stage(
        repo,
        &src,
        &ids,
        &StageOptions {
            remote: opts.remote.as_ref(),
            karg: &opts.karg,
            karg_append: &opts.karg_append,
            boot_counting_tries: opts.boot_counting_tries,
            loader_timeout: opts.loader_timeout,
        },
        &root,
        &esp,
        &host,
        progress.pull_progress(),
    )?;
    t.deploy = secs(step);

    progress.step(Step::Plan);
    let step = Instant::now();
    let root_content = size::measure(&root, size::BLOCK)?;
    let esp_usage = size::measure(&esp, size::BLOCK)?;
    let kernels = match std::fs::symlink_metadata(esp.join(trellis_sysroot::esp::KERNEL_DIR)) {
        Ok(_) => size::measure(&esp.join(trellis_sysroot::esp::KERNEL_DIR), size::BLOCK)?.bytes,
        Err(_) => 0,
    };
    let plan = size::plan(
        opts.size,
        opts.esp_size,
        opts.free,
        root_content,
        kernels,
        esp_usage.bytes.saturating_sub(kernels),
    )?;
    let table = partition_table(&plan, &ids);
    // After every change to the trees: mke2fs and mcopy copy these times.
    fsutil::clamp_times(&root, timestamp)?;
    fsutil::clamp_times(&esp, timestamp)?;
    let multi_xattr = fsutil::count_multi_xattr(&root)? > 0;
    let disk = staging.path().join(DISK_FILE);
    write_disk(&disk, &table)?;
    t.plan = secs(step);

    progress.step(Step::RootFs);
    let step = Instant::now();
    ext4::make(
        &disk,
        &root,
        staging.path(),
        &Ext4 {
            uuid: ids.root_fs,
            hash_seed: ids.root_hash_seed,
            label: "root",
            timestamp,
            offset: plan.root_offset,
            size: plan.root,
        },
        std::slice::from_ref(&staged.deployment_path),
        multi_xattr,
    )?;
    t.root_fs = secs(step);

    progress.step(Step::Esp);
    let step = Instant::now();
    fat::make(
        &disk,
        &esp,
        &Fat {
            volume_id: ids.esp_volume_id,
            label: "ESP",
            timestamp,
            offset: plan.esp_offset,
            size: plan.esp,
        },
    )?;
    t.esp = secs(step);

    let finished = match opts.format {
        Format::Raw => disk,
        Format::Qcow2 => {
            progress.step(Step::Convert);
            let step = Instant::now();
            let out = staging.path().join(QCOW2_FILE);
            Tool::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&disk)
                .arg(&out)
                .run()?;
            std::fs::remove_file(&disk).ctx("remove", &disk)?;
            t.convert = secs(step);
            out
        }
    };
    std::fs::File::open(&finished)
        .and_then(|f| f.sync_all())
        .ctx("sync", &finished)?;
    std::fs::rename(&finished, &opts.output).ctx("rename into", &opts.output)?;
    let file_size = std::fs::metadata(&opts.output)
        .ctx("stat", &opts.output)?
        .len();
    drop(staging);
    t.total = secs(start);

    let ids_report = IdsReport::from(&ids);
    let partitions = table
        .partitions
        .iter()
        .zip([
            ("vfat", ids_report.esp_volume_id.clone()),
            ("ext4", ids_report.root_fs.clone()),
        ])
        .map(|(p, (fs, id))| PartitionReport {
            name: p.name.clone(),
            type_guid: p.type_guid.to_string(),
            uuid: p.guid.to_string(),
            offset: p.first_lba * gpt::SECTOR,
            size: (p.last_lba + 1 - p.first_lba) * gpt::SECTOR,
            filesystem: fs,
            fs_id: id,
        })
        .collect();
    Ok(ImageOutcome {
        output: opts.output.clone(),
        format: opts.format,
        disk_size: plan.disk,
        file_size,
        ref_name: src.ref_name.clone(),
        commit: src.commit.to_hex(),
        version: src.version.clone(),
        osname: src.osname.clone(),
        origin: staged.origin,
        remote_url: opts.remote.as_ref().map(|r| r.url.clone()),
        signed_remote: opts.remote.as_ref().is_some_and(|r| !r.keys.is_empty()),
        kargs: staged.kargs.to_string(),
        deployment: staged.deployment_path,
        timestamp,
        ids: ids_report,
        partitions,
        root_content,
        esp_content: esp_usage.bytes,
        timings: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::MIB;

    #[test]
    fn table_matches_the_plan() {
        let plan = size::plan(
            SizeSpec::Auto,
            SizeSpec::Auto,
            size::GIB,
            Usage {
                bytes: 100 * MIB,
                inodes: 1000,
            },
            10 * MIB,
            MIB,
        )
        .unwrap();
        let ids = ImageIds::for_commit("c");
        let g = partition_table(&plan, &ids);
        g.validate().unwrap();
        assert_eq!(g.partitions[0].first_lba, 2048);
        assert_eq!(g.partitions[1].first_lba, (MIB + plan.esp) / 512);
        assert_eq!(
            (g.partitions[1].last_lba + 1) * 512,
            plan.root_offset + plan.root
        );
        assert!(g.partitions[1].last_lba <= g.last_usable());
        assert_eq!(g.sectors * 512, plan.disk);
    }

    #[test]
    fn output_checks() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_output(tmp.path()).is_err());
        assert!(check_output(&tmp.path().join("no/such/dir/disk.raw")).is_err());
        assert_eq!(
            check_output(&tmp.path().join("disk.raw")).unwrap(),
            tmp.path()
        );
        assert_eq!(check_output(Path::new("disk.raw")).unwrap(), Path::new("."));
        assert_eq!("qcow2".parse(), Ok(Format::Qcow2));
        assert!("vmdk".parse::<Format>().is_err());
    }
}
