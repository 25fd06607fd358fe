//! Remotes, keys, signatures and the summary on the command line, against the real `ostree`
//! CLI. The Debian ostree (2022.7) has no ed25519 support, so signatures are checked
//! independently with `openssl pkeyutl` on the bytes ostree prints.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn oflag(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

fn init_trellis(repo: &Path) {
    run_ok(&mut trellis(&[
        "init",
        "--repo",
        p(repo),
        "--mode",
        "archive",
    ]));
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn small_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
    std::fs::write(dir.join("etc/os-release"), b"ID=debian\n").expect("write");
    std::fs::write(dir.join("hello"), b"hello\n").expect("write");
}

/// `trellis keygen -o DIR/NAME`; returns (secret file, public file, printed public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let sk = dir.join(name);
    let out = run_ok(&mut trellis(&["keygen", "-o", p(&sk)]));
    (sk.clone(), dir.join(format!("{name}.pub")), out)
}

/// The bytes of an `aay` as `ostree show --print-detached-metadata-key` prints it, one Vec
/// each. GLib prints an element as `[byte 0x01, 0x02]` (only the first element is annotated),
/// or, when its only nul byte is its last one, as a `b'...'` or `b"..."` string in
/// `g_strescape` form; a random signature does that about once in 330.
fn parse_aay_text(text: &str) -> Vec<Vec<u8>> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not an aay: {text}"));
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b',' => i += 1,
            b'[' => {
                let close = inner[i..]
                    .find(']')
                    .unwrap_or_else(|| panic!("unclosed element in {text}"))
                    + i;
                let elem = inner[i + 1..close].trim_start_matches("byte ");
                out.push(
                    elem.split(',')
                        .filter(|b| !b.trim().is_empty())
                        .map(|b| {
                            let b = b.trim().trim_start_matches("0x");
                            u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("byte {b:?}: {e}"))
                        })
                        .collect(),
                );
                i = close + 1;
            }
            b'b' => {
                let quote = bytes[i + 1];
                let mut elem = Vec::new();
                i += 2;
                while bytes[i] != quote {
                    if bytes[i] != b'\\' {
                        elem.push(bytes[i]);
                        i += 1;
                        continue;
                    }
                    i += 1;
                    let simple = match bytes[i] {
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'v' => Some(0x0b),
                        b'\\' | b'"' | b'\'' => Some(bytes[i]),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        elem.push(c);
                        i += 1;
                    } else {
                        let digits = bytes[i..]
                            .iter()
                            .take(3)
                            .take_while(|d| (b'0'..=b'7').contains(d))
                            .count();
                        let octal = &inner[i..i + digits];
                        elem.push(
                            u8::from_str_radix(octal, 8)
                                .unwrap_or_else(|e| panic!("escape {octal:?} in {text}: {e}")),
                        );
                        i += digits;
                    }
                }
                // The string form stands for the bytes up to and including the final nul.
                elem.push(0);
                out.push(elem);
                i += 1;
            }
            _ => panic!("unexpected {:?} at {i} in {text}", bytes[i] as char),
        }
    }
    out
}

#[test]
fn aay_text_in_both_of_glibs_forms_is_parsed() {
    assert_eq!(
        parse_aay_text("[[byte 0x01, 0xff], [0x00, 0x41]]"),
        vec![vec![1, 0xff], vec![0, 0x41]]
    );
    // Both printed by GLib 2.74's g_variant_print.
    assert_eq!(
        parse_aay_text("[[byte 0x02], b'A']"),
        vec![vec![2], vec![b'A', 0]]
    );
    assert_eq!(
        parse_aay_text(r#"[b'A\001\377\\\"\n', [0x02], b"it's\t"]"#),
        vec![
            vec![b'A', 1, 0xff, b'\\', b'"', b'\n', 0],
            vec![2],
            vec![b'i', b't', b'\'', b's', b'\t', 0]
        ]
    );
}

/// Verify a pure Ed25519 signature with openssl, given the base64 public key file.
fn openssl_verifies(pubfile: &Path, data: &Path, sig: &[u8], scratch: &Path) -> bool {
    let der = scratch.join("pub.der");
    let sigf = scratch.join("sig.bin");
    std::fs::write(&sigf, sig).expect("write sig");
    // SPKI DER prefix for an Ed25519 public key, then the 32 raw bytes.
    sh(&format!(
        "printf '302a300506032b6570032100' | xxd -r -p > {d} && base64 -d {k} >> {d}",
        d = der.display(),
        k = pubfile.display()
    ));
    run_raw(std::process::Command::new("openssl").args([
        "pkeyutl",
        "-verify",
        "-pubin",
        "-keyform",
        "DER",
        "-rawin",
        "-inkey",
        p(&der),
        "-in",
        p(data),
        "-sigfile",
        p(&sigf),
    ]))
    .status
    .success()
}

fn commit_object(repo: &Path, commit: &str) -> PathBuf {
    repo.join("objects")
        .join(&commit[..2])
        .join(format!("{}.commit", &commit[2..]))
}

fn ostree_signatures(repo: &Path, commit: &str) -> Vec<Vec<u8>> {
    let out = run_ok(&mut ostree(&[
        "show",
        &oflag(repo),
        "--print-detached-metadata-key=ostree.sign.ed25519",
        commit,
    ]));
    parse_aay_text(&out)
}

#[test]
fn remotes_written_by_either_tool_are_read_by_the_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path().join("t");
    let o = tmp.path().join("o");
    init_trellis(&t);
    run_ok(&mut ostree(&["init", &oflag(&o), "--mode=archive"]));
    let key = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

    // Same options through both tools: the config files are byte-identical.
    let set_sv = "sign-verify=ed25519".to_string();
    let set_key = format!("verification-ed25519-key={key}");
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "--set",
        &set_sv,
        "--set",
        &set_key,
        "origin",
        "http://127.0.0.1:18081",
    ]));
    run_ok(&mut ostree(&[
        "remote",
        "add",
        &oflag(&o),
        "--no-gpg-verify",
        &format!("--set={set_sv}"),
        &format!("--set={set_key}"),
        "origin",
        "http://127.0.0.1:18081",
    ]));
    let tc = std::fs::read_to_string(t.join("config")).expect("config");
    let oc = std::fs::read_to_string(o.join("config")).expect("config");
    assert_eq!(tc, oc);

    // Trellis-written remotes, read by ostree.
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "--sign-verify-key",
        key,
        "keyed",
        "https://example.com/repo",
    ]));
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "local",
        "file:///srv/repo",
    ]));
    let text = std::fs::read_to_string(t.join("config")).expect("config");
    assert!(
        text.contains(&format!(
            "[remote \"keyed\"]\nurl=https://example.com/repo\ngpg-verify=false\n\
             verification-ed25519-key={key}\nsign-verify=ed25519\n"
        )),
        "{text}"
    );
    assert_eq!(
        run_ok(&mut ostree(&["remote", "list", &oflag(&t)])),
        "keyed\nlocal\norigin"
    );
    let listed = run_ok(&mut ostree(&["remote", "list", "-u", &oflag(&t)]));
    assert!(
        listed.contains("keyed   https://example.com/repo"),
        "{listed}"
    );
    assert!(listed.contains("local   file:///srv/repo"), "{listed}");
    assert_eq!(
        run_ok(&mut ostree(&["remote", "show-url", &oflag(&t), "keyed"])),
        "https://example.com/repo"
    );
    assert_eq!(
        run_ok(&mut ostree(&[
            "config",
            &oflag(&t),
            "get",
            "remote \"local\".gpg-verify"
        ])),
        "false"
    );
    // trellis and ostree print the same list.
    assert_eq!(
        run_ok(&mut trellis(&[
            "remote",
            "list",
            "--repo",
            p(&t),
            "--show-urls"
        ])),
        listed
    );

    // ostree-written remotes, read by trellis.
    run_ok(&mut ostree(&[
        "remote",
        "add",
        &oflag(&t),
        "--no-gpg-verify",
        "--set=branches=main;stable",
        "from-ostree",
        "http://127.0.0.1:9/r",
    ]));
    assert_eq!(
        run_ok(&mut trellis(&[
            "remote",
            "show-url",
            "--repo",
            p(&t),
            "from-ostree"
        ])),
        "http://127.0.0.1:9/r"
    );
    let json: serde_json::Value = serde_json::from_str(&run_ok(&mut trellis(&[
        "remote",
        "list",
        "--repo",
        p(&t),
        "--json",
    ])))
    .expect("json");
    let fo = json
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "from-ostree"))
        .expect("from-ostree listed");
    assert_eq!(fo["url"], "http://127.0.0.1:9/r");
    assert_eq!(fo["options"]["branches"], "main;stable");
    assert_eq!(fo["options"]["gpg-verify"], "false");

    // Round trip of deletes across the tools.
    run_ok(&mut trellis(&[
        "remote",
        "delete",
        "--repo",
        p(&t),
        "from-ostree",
    ]));
    run_ok(&mut ostree(&["remote", "delete", &oflag(&t), "local"]));
    assert_eq!(
        run_ok(&mut ostree(&["remote", "list", &oflag(&t)])),
        "keyed\norigin"
    );
    assert_eq!(
        run_ok(&mut trellis(&["remote", "list", "--repo", p(&t)])),
        "keyed\norigin"
    );
    let again = run_raw(&mut trellis(&[
        "remote",
        "delete",
        "--repo",
        p(&t),
        "local",
    ]));
    assert!(!again.status.success());
    assert!(
        stderr_of(&again).contains("\"local\" is not configured"),
        "{}",
        stderr_of(&again)
    );
    run_ok(&mut trellis(&[
        "remote",
        "delete",
        "--repo",
        p(&t),
        "--if-exists",
        "local",
    ]));

    // Adding an existing name fails unless --if-not-exists, which changes nothing.
    let before = std::fs::read(t.join("config")).expect("config");
    let dup = run_raw(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "keyed",
        "http://x.org/",
    ]));
    assert!(!dup.status.success());
    assert!(
        stderr_of(&dup).contains("already exists"),
        "{}",
        stderr_of(&dup)
    );
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "--if-not-exists",
        "keyed",
        "http://x.org/",
    ]));
    assert_eq!(std::fs::read(t.join("config")).expect("config"), before);
}

#[test]
fn bad_remote_names_urls_and_keys_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path().join("t");
    init_trellis(&t);
    let before = std::fs::read(t.join("config")).expect("config");
    let cases: [(&[&str], &str); 10] = [
        (&["a/b", "http://h/"], "invalid remote name"),
        (&["has space", "http://h/"], "invalid remote name"),
        (&["ok", "ftp://h/r"], "scheme \"ftp\" is not supported"),
        (&["ok", "not a url"], "invalid remote URL"),
        (&["ok", "http://"], "invalid remote URL"),
        (&["ok", "file://host/srv/r"], "file:///absolute/path"),
        (&["ok", "/srv/repo"], "invalid remote URL"),
        (
            &["--sign-verify-key", "AAAA", "ok", "http://h/"],
            "expected 32 bytes",
        ),
        (
            &["--set", "noequals", "ok", "http://h/"],
            "expected KEY=VALUE",
        ),
        (
            &["--set", "url=http://h/", "ok", "http://h/"],
            "second argument",
        ),
    ];
    for (args, why) in cases {
        let mut full = vec!["remote", "add", "--repo", p(&t)];
        full.extend_from_slice(args);
        let out = run_raw(&mut trellis(&full));
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr_of(&out).contains(why),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    let missing = tmp.path().join("missing.pub");
    let out = run_raw(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&t),
        "--sign-verify-file",
        p(&missing),
        "ok",
        "http://h/",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("missing.pub"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read(t.join("config")).expect("config"), before);
    let show = run_raw(&mut trellis(&[
        "remote",
        "show-url",
        "--repo",
        p(&t),
        "nope",
    ]));
    assert!(!show.status.success());
    assert!(
        stderr_of(&show).contains("\"nope\" is not configured"),
        "{}",
        stderr_of(&show)
    );

    // A key file is stored by absolute path and checked at add time.
    let (_, pubfile, _) = keygen(tmp.path(), "k");
    run_ok(
        trellis(&[
            "remote",
            "add",
            "--repo",
            p(&t),
            "--sign-verify-file",
            "k.pub",
            "f",
            "http://h/",
        ])
        .current_dir(tmp.path()),
    );
    let text = std::fs::read_to_string(t.join("config")).expect("config");
    assert!(
        text.contains(&format!(
            "verification-ed25519-file={}\nsign-verify=ed25519\n",
            pubfile.display()
        )),
        "{text}"
    );
}

#[test]
fn keygen_writes_ostree_key_formats_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sk = tmp.path().join("signing");
    let pk = tmp.path().join("signing.pub");
    // Even under a permissive umask, the secret key is private.
    let printed = sh(&format!(
        "umask 0; {} keygen -o {}",
        trellis_bin(),
        sk.display()
    ));
    let mode = |f: &Path| std::fs::metadata(f).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&sk), 0o600);
    assert_eq!(mode(&pk), 0o644);
    let secret = std::fs::read_to_string(&sk).expect("read");
    let public = std::fs::read_to_string(&pk).expect("read");
    assert_eq!(secret.lines().count(), 1);
    assert_eq!(public, format!("{printed}\n"));
    assert_eq!(sh(&format!("base64 -d {} | wc -c", sk.display())), "64");
    assert_eq!(sh(&format!("base64 -d {} | wc -c", pk.display())), "32");
    // libsodium layout: seed ‖ public.
    assert_eq!(
        sh(&format!("base64 -d {} | tail -c 32 | base64", sk.display())),
        printed
    );

    let out = run_raw(&mut trellis(&["keygen", "-o", p(&sk)]));
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("refusing to overwrite"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read_to_string(&sk).expect("read"), secret);
    assert_eq!(std::fs::read_to_string(&pk).expect("read"), public);

    // An existing FILE.pub alone is enough to refuse, and nothing is created.
    let other = tmp.path().join("other");
    std::fs::write(tmp.path().join("other.pub"), b"keep\n").expect("write");
    let out = run_raw(&mut trellis(&["keygen", "-o", p(&other)]));
    assert!(!out.status.success());
    assert!(!other.exists());
    assert_eq!(
        std::fs::read(tmp.path().join("other.pub")).expect("read"),
        b"keep\n"
    );
}

#[test]
fn signatures_are_ostree_detached_metadata_and_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    init_trellis(&repo);
    let (k1, k1pub, k1b64) = keygen(tmp.path(), "k1");
    let (k2, k2pub, k2b64) = keygen(tmp.path(), "k2");

    // commit --sign-key: one signature, in ostree's format, valid for the commit bytes.
    let c = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        p(&repo),
        "-b",
        "main",
        "--sign-key",
        p(&k1),
        p(&tree),
    ]));
    let sigs = ostree_signatures(&repo, &c);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].len(), 64);
    let obj = commit_object(&repo, &c);
    assert!(openssl_verifies(&k1pub, &obj, &sigs[0], tmp.path()));
    assert!(!openssl_verifies(&k2pub, &obj, &sigs[0], tmp.path()));
    let ok = run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        "main",
        "--verify",
        "--keys-file",
        p(&k1pub),
    ]));
    assert!(ok.contains(&k1b64), "{ok}");
    let fsck = run_ok(&mut ostree(&["fsck", &oflag(&repo)]));
    assert!(fsck.contains("no errors found"), "{fsck}");

    // The wrong key fails, naming the problem.
    let bad = run_raw(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c,
        "--verify",
        "--keys-file",
        p(&k2pub),
    ]));
    assert!(!bad.status.success());
    assert!(
        stderr_of(&bad).contains("none of its 1 ed25519 signature"),
        "{}",
        stderr_of(&bad)
    );

    // A second key adds a signature and keeps the first; signing twice adds nothing.
    run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c,
        "--key",
        p(&k2),
    ]));
    run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c,
        "--key",
        p(&k2),
    ]));
    let sigs = ostree_signatures(&repo, &c);
    assert_eq!(sigs.len(), 2);
    assert!(openssl_verifies(&k1pub, &obj, &sigs[0], tmp.path()));
    assert!(openssl_verifies(&k2pub, &obj, &sigs[1], tmp.path()));
    let ok = run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c,
        "--verify",
        "--keys-file",
        p(&k2pub),
    ]));
    assert!(ok.contains(&k2b64) && !ok.contains(&k1b64), "{ok}");

    // An unsigned commit has nothing to verify.
    std::fs::write(tree.join("hello"), b"changed\n").expect("write");
    let c2 = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        p(&repo),
        "-b",
        "main",
        p(&tree),
    ]));
    let none = run_raw(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c2,
        "--verify",
        "--keys-file",
        p(&k1pub),
    ]));
    assert!(!none.status.success());
    assert!(
        stderr_of(&none).contains("has no ed25519 signature"),
        "{}",
        stderr_of(&none)
    );

    // A secret key file that is not a key is refused before anything is written.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not a key\n").expect("write");
    let out = run_raw(&mut trellis(&[
        "sign",
        "--repo",
        p(&repo),
        &c2,
        "--key",
        p(&junk),
    ]));
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("junk"), "{}", stderr_of(&out));
    assert!(
        !repo
            .join("objects")
            .join(&c2[..2])
            .join(format!("{}.commitmeta", &c2[2..]))
            .exists()
    );
}

/// Byte offset of the `t` value that follows `key` in an `a{sv}` (aligned to 8 after the
/// key's NUL; a `t` variant body is 8-aligned).
fn value_offset(data: &[u8], key: &str) -> usize {
    let needle = [key.as_bytes(), b"\0"].concat();
    let at = data
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("{key} not in summary"));
    (at + needle.len()).next_multiple_of(8)
}

fn view_json(repo: &Path) -> serde_json::Value {
    serde_json::from_str(&run_ok(&mut trellis(&[
        "summary",
        "--repo",
        p(repo),
        "--view",
        "--json",
    ])))
    .expect("json")
}

#[test]
fn summary_matches_ostree_and_signed_summary_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    run_ok(&mut ostree(&["init", &oflag(&repo), "--mode=archive"]));
    let commit = |branch: &str, extra: &[&str]| {
        let b = format!("--branch={branch}");
        let mut args = vec!["commit", "-s", "s", "--timestamp=2020-01-01 00:00:00 +0000"];
        let r = oflag(&repo);
        args.push(&r);
        args.push(&b);
        args.extend_from_slice(extra);
        args.push(p(&tree));
        run_ok(&mut ostree(&args))
    };
    let main = commit("main", &["--add-metadata-string=version=1.2.3"]);
    let stable = commit("os/x86_64/stable", &[]);
    // A remote ref must not appear in the summary.
    std::fs::create_dir_all(repo.join("refs/remotes/origin")).expect("mkdir");
    std::fs::write(repo.join("refs/remotes/origin/main"), format!("{stable}\n")).expect("write");

    run_ok(&mut ostree(&["summary", &oflag(&repo), "-u"]));
    let by_ostree = std::fs::read(repo.join("summary")).expect("summary");
    let ostree_view = view_json(&repo);
    run_ok(&mut trellis(&["summary", "--repo", p(&repo), "-u"]));
    let mut by_trellis = std::fs::read(repo.join("summary")).expect("summary");

    // Same refs, commits, sizes, timestamps and versions.
    let trellis_view = view_json(&repo);
    assert_eq!(trellis_view["refs"], ostree_view["refs"]);
    let refs = trellis_view["refs"].as_array().expect("refs");
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["name"], "main");
    assert_eq!(refs[0]["commit"], main.as_str());
    assert_eq!(refs[0]["version"], "1.2.3");
    assert_eq!(refs[0]["timestamp"], 1577836800);
    assert_eq!(refs[1]["commit"], stable.as_str());

    // Byte-identical except the last-modified time.
    assert_eq!(by_trellis.len(), by_ostree.len());
    let at = value_offset(&by_ostree, "ostree.summary.last-modified");
    assert_eq!(
        at,
        value_offset(&by_trellis, "ostree.summary.last-modified")
    );
    by_trellis[at..at + 8].copy_from_slice(&by_ostree[at..at + 8]);
    assert_eq!(by_trellis, by_ostree);

    // ostree reads trellis's summary.
    let view = run_ok(&mut ostree(&["summary", &oflag(&repo), "--view"]));
    assert!(view.contains("* main\n    Latest Commit"), "{view}");
    assert!(view.contains(&format!("      {main}\n")), "{view}");
    assert!(view.contains("* os/x86_64/stable\n"), "{view}");
    assert!(view.contains(&format!("      {stable}\n")), "{view}");
    assert!(!view.contains("origin"), "{view}");

    // Signed: summary.sig verifies (by trellis and by openssl) and stops verifying once the
    // summary is tampered with.
    let (k, kpub, kb64) = keygen(tmp.path(), "k");
    let (_, k2pub, _) = keygen(tmp.path(), "k2");
    run_ok(&mut trellis(&[
        "summary",
        "--repo",
        p(&repo),
        "-u",
        "--sign-key",
        p(&k),
    ]));
    let ok = run_ok(&mut trellis(&[
        "summary",
        "--repo",
        p(&repo),
        "--verify",
        "--keys-file",
        p(&kpub),
    ]));
    assert!(ok.contains(&kb64), "{ok}");
    let sig = std::fs::read(repo.join("summary.sig")).expect("summary.sig");
    // a{sv} with one entry: "ostree.sign.ed25519\0", padding to 24, then the aay's one
    // 64-byte element, its framing offset, the variant's type and the entry's offset.
    assert!(sig.starts_with(b"ostree.sign.ed25519\0"));
    assert!(openssl_verifies(
        &kpub,
        &repo.join("summary"),
        &sig[24..88],
        tmp.path()
    ));
    let wrong = run_raw(&mut trellis(&[
        "summary",
        "--repo",
        p(&repo),
        "--verify",
        "--keys-file",
        p(&k2pub),
    ]));
    assert!(!wrong.status.success());
    let mut summary = std::fs::read(repo.join("summary")).expect("summary");
    let last = summary.len() - 1;
    summary[last] ^= 0x01;
    std::fs::write(repo.join("summary"), &summary).expect("write");
    let tampered = run_raw(&mut trellis(&[
        "summary",
        "--repo",
        p(&repo),
        "--verify",
        "--keys-file",
        p(&kpub),
    ]));
    assert!(!tampered.status.success());
    assert!(
        stderr_of(&tampered).contains("none of its 1 ed25519 signature"),
        "{}",
        stderr_of(&tampered)
    );

    // Unsigned regeneration drops the stale signature; verifying then fails clearly.
    run_ok(&mut trellis(&["summary", "--repo", p(&repo), "-u"]));
    assert!(!repo.join("summary.sig").exists());
    let unsigned = run_raw(&mut trellis(&[
        "summary",
        "--repo",
        p(&repo),
        "--verify",
        "--keys-file",
        p(&kpub),
    ]));
    assert!(!unsigned.status.success());
    assert!(
        stderr_of(&unsigned).contains("has no ed25519 signature"),
        "{}",
        stderr_of(&unsigned)
    );
}
