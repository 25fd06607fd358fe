//! `trellis commit` against the real `ostree` CLI: same checksums, fsck-clean repos,
//! checkouts that reproduce the tree, and the parent chain `ostree log` shows.

mod common;
use common::*;
use std::path::Path;

const MODES: [&str; 3] = ["archive", "bare", "bare-user"];
const TS_OSTREE: &str = "--timestamp=2020-01-01 00:00:00 +0000";
const TS_TRELLIS: &str = "2020-01-01T00:00:00Z";

fn ostree_init(repo: &Path, mode: &str) -> String {
    run_ok(&mut ostree(&[
        "init",
        &format!("--repo={}", repo.display()),
        &format!("--mode={mode}"),
    ]));
    format!("--repo={}", repo.display())
}

fn ostree_commit(repo: &Path, tree: &Path, extra: &[&str]) -> String {
    let repo_arg = format!("--repo={}", repo.display());
    let mut args = vec![
        "commit",
        &repo_arg,
        "-b",
        "main",
        "-s",
        "subject",
        "--body=body",
        TS_OSTREE,
    ];
    args.extend_from_slice(extra);
    args.push(tree.to_str().expect("utf-8 temp path"));
    run_ok(&mut ostree(&args))
}

/// A trellis commit with the same subject, body and timestamp as `ostree_commit`.
fn same_as_ostree<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-s", "subject", "--body", "body", "--timestamp", TS_TRELLIS];
    args.extend_from_slice(extra);
    args
}

fn assert_ostree_fsck_clean(repo: &str) {
    let fsck = run_ok(&mut ostree(&["fsck", &format!("--repo={repo}")]));
    assert!(fsck.contains("no errors found"), "{repo}: {fsck}");
}

#[test]
fn same_commit_checksum_as_ostree_in_every_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    for mode in MODES {
        let o = tmp.path().join(format!("ostree-{mode}"));
        ostree_init(&o, mode);
        let t = init_repo(&tmp.path().join(format!("trellis-{mode}")), mode);
        let a = ostree_commit(
            &o,
            &tree,
            &[
                "--add-metadata-string=k=v",
                "--add-metadata-string=version=1.0",
            ],
        );
        let b = commit_dir(
            &t,
            "main",
            &tree,
            &same_as_ostree(&["--add-metadata", "k=v", "--version", "1.0"]),
        );
        assert_eq!(a, b, "{mode}: ostree and trellis commit checksums differ");
        assert_eq!(a.len(), 64);
        if mode != "archive" {
            // Bare objects are plain files: trellis must write exactly what ostree writes
            // (bytes, modes, owners, xattrs). Archive bytes may differ by deflate encoder.
            assert_same_tree(&o.join("objects"), &Path::new(&t).join("objects"));
        }

        // ostree accepts the repo trellis wrote, and its checkout reproduces the tree.
        assert_ostree_fsck_clean(&t);
        let co = tmp.path().join(format!("checkout-{mode}"));
        run_ok(&mut ostree(&[
            "checkout",
            &format!("--repo={t}"),
            "main",
            co.to_str().expect("utf-8"),
        ]));
        assert_same_tree(&tree, &co);

        // A second commit chains to the first, as `ostree log` shows.
        std::fs::write(tree.join("added"), b"second build").expect("write");
        let c2 = commit_dir(&t, "main", &tree, &[]);
        let log = run_ok(&mut ostree(&["log", &format!("--repo={t}"), "main"]));
        assert!(
            log.starts_with(&format!("commit {c2}\nParent:  {b}")),
            "{mode}: {log}"
        );
        assert_eq!(
            run_ok(&mut trellis(&["rev-parse", "--repo", &t, "main^"])),
            b
        );
        std::fs::remove_file(tree.join("added")).expect("remove");
    }
}

#[test]
fn debian_rootfs_same_checksum_as_ostree() {
    let rootfs = debian_rootfs();
    let tmp = tempfile::tempdir().expect("tempdir");
    // ostree cannot commit /dev's device nodes: give it a copy without them, and let
    // trellis drop them itself with --skip-special.
    let copy = tmp.path().join("rootfs");
    sh(&format!(
        "cp -a {} {} && find {}/dev ! -type d ! -type l -delete",
        rootfs.display(),
        copy.display(),
        copy.display()
    ));
    for mode in MODES {
        let o = tmp.path().join(format!("ostree-{mode}"));
        ostree_init(&o, mode);
        let t = init_repo(&tmp.path().join(format!("trellis-{mode}")), mode);
        let a = ostree_commit(&o, &copy, &[]);
        let out = commit_dir_raw(&t, "main", &rootfs, &same_as_ostree(&["--skip-special"]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            a,
            String::from_utf8_lossy(&out.stdout).trim(),
            "{mode}: Debian rootfs commit checksums differ"
        );
        assert!(
            stderr.contains("skipped character device") && stderr.contains("dev/null"),
            "{stderr}"
        );
        assert_ostree_fsck_clean(&t);
    }
}

#[test]
fn tar_commit_equals_directory_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let repo = init_repo(&tmp.path().join("repo"), "bare-user");
    let from_dir = commit_dir(&repo, "main", &tree, &same_as_ostree(&["--orphan"]));
    for (ext, flag) in [
        ("tar", ""),
        ("tar.gz", "--gzip"),
        ("tar.zst", "--zstd"),
        ("tar.xz", "--xz"),
    ] {
        let tarball = tmp.path().join(format!("tree.{ext}"));
        sh(&format!(
            "tar -C {} --xattrs --xattrs-include='*' --numeric-owner {flag} -cf {} .",
            tree.display(),
            tarball.display()
        ));
        let mut args = vec![
            "commit",
            "--repo",
            &repo,
            "-b",
            "main",
            "--tar",
            tarball.to_str().expect("utf-8"),
        ];
        args.extend(same_as_ostree(&["--orphan"]));
        assert_eq!(
            run_ok(&mut trellis(&args)),
            from_dir,
            "commit of {ext} differs from the directory commit"
        );
    }
}

#[test]
fn special_files_are_refused_or_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    sh(&format!(
        "mkdir -p {0}/d && echo a > {0}/a && mkfifo {0}/d/fifo",
        tree.display()
    ));
    let repo = init_repo(&tmp.path().join("repo"), "archive");
    let out = commit_dir_raw(&repo, "main", &tree, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("d/fifo") && err.contains("FIFO") && err.contains("--skip-special"),
        "{err}"
    );
    assert!(
        run_ok(&mut trellis(&["refs", "--repo", &repo])).is_empty(),
        "no ref after a failed commit"
    );

    let out = commit_dir_raw(&repo, "main", &tree, &["--skip-special"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped FIFO"));
    let ls = run_ok(&mut ostree(&[
        "ls",
        &format!("--repo={repo}"),
        "-R",
        "main",
    ]));
    assert!(ls.contains("/a") && !ls.contains("fifo"), "{ls}");
}

#[test]
fn non_utf8_names_are_refused_like_ostree() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    std::fs::write(tree.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").expect("write");
    let repo = init_repo(&tmp.path().join("repo"), "bare-user");
    let out = commit_dir_raw(&repo, "main", &tree, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UTF-8") && err.contains("bad"), "{err}");
    // The oracle refuses the same tree.
    let o = tmp.path().join("o");
    let orepo = ostree_init(&o, "bare-user");
    assert!(
        !run_raw(&mut ostree(&[
            "commit",
            &orepo,
            "-b",
            "main",
            tree.to_str().expect("utf-8")
        ]))
        .status
        .success()
    );
}

#[test]
fn skip_if_unchanged_makes_no_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    sh(&format!("mkdir -p {0} && echo a > {0}/a", tree.display()));
    let repo = init_repo(&tmp.path().join("repo"), "archive");
    let first = commit_dir(&repo, "main", &tree, &[]);
    assert_eq!(
        commit_dir(&repo, "main", &tree, &["--skip-if-unchanged"]),
        first
    );
    std::fs::write(tree.join("b"), b"new").expect("write");
    let changed = commit_dir(&repo, "main", &tree, &["--skip-if-unchanged", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&changed).expect("json");
    assert_eq!(v["parent"], first.as_str());
    assert_eq!(v["unchanged"], false);
    assert_eq!(v["stats"]["new_content_objects"], 1);
}

#[test]
fn trellis_reads_repos_written_by_ostree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    for mode in MODES {
        let o = tmp.path().join(format!("o-{mode}"));
        ostree_init(&o, mode);
        let c1 = ostree_commit(&o, &tree, &["--add-metadata-string=version=7"]);
        let c2 = ostree_commit(&o, &tree, &[]);
        let repo = o.to_str().expect("utf-8");
        assert_eq!(
            run_ok(&mut trellis(&["rev-parse", "--repo", repo, "main"])),
            c2
        );
        let log: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
            "log", "--repo", repo, "main", "--json",
        ])))
        .expect("json");
        assert_eq!(log[0]["commit"], c2.as_str());
        assert_eq!(log[0]["parent"], c1.as_str());
        assert_eq!(log[1]["version"], "7");
        assert_eq!(log.as_array().map(Vec::len), Some(2));
        let show: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
            "show", "--repo", repo, "main", "--json",
        ])))
        .expect("json");
        assert_eq!(show["metadata"]["ostree.ref-binding"][0], "main");
        assert_eq!(show["subject"], "subject");
    }
}
