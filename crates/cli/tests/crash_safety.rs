//! A commit killed with SIGKILL at any point leaves a repository that `ostree fsck` accepts,
//! with the ref at the old or the new commit, and the next commit succeeds.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn commit_killed_at_any_point_leaves_repo_consistent() {
    let rootfs = debian_rootfs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(&tmp.path().join("repo"), "archive");
    let r = repo.as_str();
    let small = tmp.path().join("small");
    sh(&format!(
        "mkdir -p {0} && echo first > {0}/a",
        small.display()
    ));
    let first = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        r,
        "-b",
        "main",
        small.to_str().unwrap(),
    ]));

    // Spread the kills over the whole run: scanning, hashing, compressing, the commit
    // object, the ref. Each run reuses the objects the killed runs left behind.
    let mut expected = first.clone();
    for delay_ms in [5u64, 40, 150, 400, 900, 1500, 2500, 4000] {
        let mut child = trellis(&[
            "commit",
            "--repo",
            r,
            "-b",
            "main",
            "--skip-special",
            "-s",
            "big",
        ])
        .arg(&rootfs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn trellis");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().expect("wait");

        let fsck = run_ok(&mut ostree(&["fsck", &format!("--repo={r}")]));
        assert!(
            fsck.contains("no errors found"),
            "after kill at {delay_ms} ms: {fsck}"
        );
        let tip = run_ok(&mut trellis(&["rev-parse", "--repo", r, "main"]));
        if out.status.success() {
            assert_eq!(
                tip,
                String::from_utf8_lossy(&out.stdout).trim(),
                "finished run at {delay_ms} ms"
            );
        } else if tip != expected {
            // Killed after the ref moved: the new tip must be a whole commit on the old one.
            let parent = run_ok(&mut trellis(&["rev-parse", "--repo", r, "main^"]));
            assert_eq!(
                parent, expected,
                "ref at {tip} after a kill at {delay_ms} ms is not a child of {expected}"
            );
        }
        expected = tip;
    }
    // And a commit run to the end succeeds on what the killed ones left.
    let last = run_ok(
        trellis(&[
            "commit",
            "--repo",
            r,
            "-b",
            "main",
            "--skip-special",
            "-s",
            "big",
        ])
        .arg(&rootfs),
    );
    assert_eq!(
        run_ok(&mut trellis(&["rev-parse", "--repo", r, "main"])),
        last
    );
    let fsck = run_ok(&mut ostree(&["fsck", &format!("--repo={r}")]));
    assert!(fsck.contains("no errors found"), "{fsck}");
    let log = run_ok(&mut ostree(&["log", &format!("--repo={r}"), "main"]));
    assert!(
        log.contains(&format!("commit {first}")),
        "the chain reaches the first commit: {log}"
    );
}
