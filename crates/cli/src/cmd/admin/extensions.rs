//! Before `admin upgrade` stages a new OS: the installed system extensions that would stop
//! matching it. Each is reported, and the remote is asked for a version built for the new
//! OS, which then replaces the installed one (merged at the next boot, not now).

use std::path::Path;
use trellis_store::{Checksum, Repo};
use trellis_sysext::device::{Device, InstallOptions, would_stop_matching};
use trellis_sysext::fetch::Source;
use trellis_sysext::matching::HostOs;
use trellis_sysext::osrelease::OsRelease;

/// Where the commit's os-release is (usr/etc/os-release links to it on Debian).
const OS_RELEASE: &str = "usr/lib/os-release";

/// The extensions under `root` (the running system) against `commit`'s os-release, with
/// fetching from `remote` (a remote configured in `repo`). Problems are warnings: the
/// upgrade itself goes on.
pub fn check_for_new_os(root: &Path, repo: &Repo, remote: Option<&str>, commit: &Checksum) {
    let text = match read_os_release(repo, commit) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warning: cannot check the installed system extensions: {e}");
            return;
        }
    };
    let scratch = crate::cmd::sysext::scratch();
    let mismatches = match would_stop_matching(root, &text, &scratch) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warning: cannot check the installed system extensions: {e}");
            return;
        }
    };
    if mismatches.is_empty() {
        return;
    }
    let device = Device::new(root);
    let new_os = device
        .host()
        .map(|now| HostOs::new(&OsRelease::parse(&text), &now.architecture));
    let source = remote
        .ok_or_else(|| "the deployment's origin names no remote".to_string())
        .and_then(|r| repo.remote(r).map_err(|e| e.to_string()))
        .and_then(|r| Source::from_remote(&r).map_err(|e| e.to_string()));
    for m in mismatches {
        let version = m.version.as_deref().unwrap_or("(no version)");
        eprintln!(
            "warning: system extension {} {version} would not be merged on the new OS: {}",
            m.name, m.reason
        );
        let fetched = match (&source, &new_os) {
            (Ok(source), Ok(os)) => device
                .install(
                    source,
                    &InstallOptions {
                        name: m.name.clone(),
                        version: None,
                        os: Some(os.clone()),
                        refresh: false,
                    },
                )
                .map_err(|e| e.to_string()),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e.to_string()),
        };
        match fetched {
            Ok(r) => eprintln!(
                "  fetched {} {} for the new OS; it is merged when the new OS boots",
                r.name, r.version
            ),
            Err(e) => eprintln!("  no version for the new OS could be fetched: {e}"),
        }
    }
}

fn read_os_release(repo: &Repo, commit: &Checksum) -> Result<String, String> {
    let (_, size, mut reader) = trellis_store::tree::open_file(repo, commit, OS_RELEASE)
        .map_err(|e| format!("reading {OS_RELEASE} of commit {commit}: {e}"))?;
    if size > 64 * 1024 {
        return Err(format!("{OS_RELEASE} of commit {commit} is {size} bytes"));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text)
        .map_err(|e| format!("reading {OS_RELEASE} of commit {commit}: {e}"))?;
    Ok(text)
}
