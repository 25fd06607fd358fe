//! The read-side commands against the `ostree` CLI: ls, cat, diff, checkout, fsck, prune.

mod common;
use common::*;
use std::path::Path;

fn setup(mode: &str) -> (tempfile::TempDir, String, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let repo = tmp.path().join("repo").to_str().expect("utf-8").to_string();
    run_ok(&mut trellis(&["init", "--repo", &repo, "--mode", mode]));
    let c1 = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        &repo,
        "-b",
        "main",
        tree.to_str().unwrap(),
    ]));
    sh(&format!(
        "cd {} && rm sub/hardlink && echo changed > hello.txt && mkdir newdir && echo n > newdir/f",
        tree.display()
    ));
    let c2 = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        &repo,
        "-b",
        "main",
        tree.to_str().unwrap(),
    ]));
    (tmp, repo, c1, c2)
}

#[test]
fn ls_cat_diff_print_what_ostree_prints() {
    let (_tmp, repo, c1, c2) = setup("archive");
    let orepo = format!("--repo={repo}");
    for args in [vec!["-R"], vec!["-R", "-C"], vec![], vec!["/sub"]] {
        let mut t = vec!["ls", "--repo", &repo, "main"];
        let mut o = vec!["ls", &orepo, "main"];
        // trellis takes flags anywhere; ostree too.
        t.extend(args.iter().copied());
        o.extend(args.iter().copied());
        assert_eq!(
            run_ok(&mut trellis(&t)),
            run_ok(&mut ostree(&o)),
            "ls {args:?}"
        );
    }
    assert_eq!(
        run_ok(&mut trellis(&["cat", "--repo", &repo, "main", "/link"])),
        run_ok(&mut ostree(&["cat", &orepo, "main", "/link"]))
    );
    let diff = run_ok(&mut trellis(&["diff", "--repo", &repo, &c1, &c2]));
    assert_eq!(diff, run_ok(&mut ostree(&["diff", &orepo, &c1, &c2])));
    assert!(
        diff.contains("D    /sub/hardlink")
            && diff.contains("M    /hello.txt")
            && diff.contains("A    /newdir"),
        "{diff}"
    );
}

#[test]
fn checkout_reproduces_the_tree_in_every_mode() {
    for mode in ["archive", "bare", "bare-user"] {
        let (tmp, repo, _c1, _c2) = setup(mode);
        let dest = tmp.path().join("co");
        run_ok(&mut trellis(&[
            "checkout",
            "--repo",
            &repo,
            "main",
            dest.to_str().unwrap(),
        ]));
        assert_same_tree(&tmp.path().join("tree"), &dest);
        let sub = tmp.path().join("sub");
        run_ok(&mut trellis(&[
            "checkout",
            "--repo",
            &repo,
            "main",
            "--subpath",
            "/sub",
            sub.to_str().unwrap(),
        ]));
        assert_same_tree(&tmp.path().join("tree/sub"), &sub);
    }
}

#[test]
fn checkout_never_writes_outside_the_target() {
    let (tmp, repo, _c1, _c2) = setup("bare-user");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    std::os::unix::fs::symlink(&outside, dest.join("sub")).expect("symlink");
    let out = run_raw(&mut trellis(&[
        "checkout",
        "--repo",
        &repo,
        "--union",
        "main",
        dest.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sub"), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).expect("list").count(),
        0,
        "something was written through the symlink"
    );
}

#[test]
fn fsck_reports_corruption_and_exits_non_zero() {
    let (_tmp, repo, _c1, c2) = setup("archive");
    let ok = run_raw(&mut trellis(&["fsck", "--repo", &repo]));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // Corrupt the content object of /hello.txt.
    let ls = run_ok(&mut trellis(&[
        "ls",
        "--repo",
        &repo,
        "-C",
        "main",
        "/hello.txt",
    ]));
    let csum = ls
        .split_whitespace()
        .nth(4)
        .expect("checksum column")
        .to_string();
    let obj = Path::new(&repo).join(format!("objects/{}/{}.filez", &csum[..2], &csum[2..]));
    let mut bytes = std::fs::read(&obj).expect("read object");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&obj, bytes).expect("write object");
    let bad = run_raw(&mut trellis(&["fsck", "--repo", &repo, "--json"]));
    assert!(!bad.status.success());
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).expect("json");
    assert_eq!(v["clean"], false);
    assert_eq!(v["problems"][0]["checksum"], csum.as_str());
    assert_eq!(v["problems"][0]["type"], "file");
    assert!(
        !run_raw(&mut ostree(&["fsck", &format!("--repo={repo}")]))
            .status
            .success(),
        "the oracle agrees"
    );
    let _ = c2;
}

#[test]
fn prune_removes_what_no_ref_reaches() {
    let (_tmp, repo, c1, _c2) = setup("archive");
    // Without --refs-only every commit is a root, as in ostree: nothing to delete.
    let all_roots: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
        "prune",
        "--repo",
        &repo,
        "--depth",
        "0",
        "--no-prune",
        "--json",
    ])))
    .expect("json");
    assert_eq!(all_roots["objects_pruned"], 0);
    let before: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
        "prune",
        "--repo",
        &repo,
        "--refs-only",
        "--depth",
        "0",
        "--no-prune",
        "--json",
    ])))
    .expect("json");
    assert!(before["objects_pruned"].as_u64().unwrap_or(0) > 0);
    let after: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
        "prune",
        "--repo",
        &repo,
        "--refs-only",
        "--depth",
        "0",
        "--json",
    ])))
    .expect("json");
    assert_eq!(after["objects_pruned"], before["objects_pruned"]);
    assert_eq!(after["commits_pruned"], 1);
    assert!(run_ok(&mut ostree(&["fsck", &format!("--repo={repo}")])).contains("no errors found"));
    let log = run_ok(&mut trellis(&["log", "--repo", &repo, "main"]));
    assert!(
        log.contains("History beyond this commit not fetched")
            && !log.contains(&format!("commit {c1}")),
        "{log}"
    );
}
