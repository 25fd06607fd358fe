//! The staged-deployment state file, `/run/ostree/staged-deployment`, in ostree's own
//! format (spec §7.5) so that `ostree admin status` shows a deployment trellis staged:
//!
//! ```text
//! a{sv} {
//!   "target":           a{sv} {"name": "CSUM.SERIAL", "osname": s, "bootcsum": s},
//!   "merge-deployment": a{sv} (same shape; optional),
//!   "kargs":            as    (optional: without it, the merge deployment's are used),
//!   "locked":           b     (optional: do not finalize at shutdown),
//! }
//! ```
//!
//! It lives in `/run`, so a reboot without finalization forgets it: the staged deployment
//! then simply never becomes a boot entry, and cleanup removes its directory.

use crate::deployment::parse_deploy_name;
use crate::error::{Error, Result};
use crate::kargs::Kargs;
use std::path::Path;
use trellis_store::Checksum;
use trellis_store::gvariant::{self, Type, Value};

/// A deployment as the state file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentId {
    pub osname: String,
    pub csum: Checksum,
    pub serial: u32,
    pub bootcsum: String,
}

impl DeploymentId {
    pub fn of(d: &crate::Deployment) -> DeploymentId {
        DeploymentId {
            osname: d.osname.clone(),
            csum: d.csum,
            serial: d.serial,
            bootcsum: d.bootcsum.clone(),
        }
    }

    pub fn matches(&self, d: &crate::Deployment) -> bool {
        self.osname == d.osname && self.csum == d.csum && self.serial == d.serial
    }

    fn to_value(&self) -> Value {
        Value::vardict(vec![
            (
                "name".into(),
                Value::str(format!("{}.{}", self.csum, self.serial)),
            ),
            ("osname".into(), Value::str(&self.osname)),
            ("bootcsum".into(), Value::str(&self.bootcsum)),
        ])
    }

    fn from_value(v: &Value, path: &Path, what: &str) -> Result<DeploymentId> {
        let bad = |why: String| Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("{what}: {why}"),
        };
        let get = |k: &str| {
            v.vardict_lookup(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("missing string {k:?}")))
        };
        let name = get("name")?;
        let (csum, serial) = parse_deploy_name(name)
            .ok_or_else(|| bad(format!("invalid name {name:?}, expected CHECKSUM.SERIAL")))?;
        let osname = get("osname")?.to_string();
        crate::layout::validate_osname(&osname)?;
        Ok(DeploymentId {
            osname,
            csum,
            serial,
            bootcsum: get("bootcsum")?.to_string(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedState {
    pub target: DeploymentId,
    pub merge: Option<DeploymentId>,
    pub kargs: Option<Kargs>,
    pub locked: bool,
}

impl StagedState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries = vec![("target".to_string(), self.target.to_value())];
        if let Some(m) = &self.merge {
            entries.push(("merge-deployment".into(), m.to_value()));
        }
        if let Some(k) = &self.kargs {
            entries.push(("kargs".into(), Value::strv(k.args())));
        }
        if self.locked {
            entries.push(("locked".into(), Value::Bool(true)));
        }
        gvariant::to_bytes(&Value::vardict(entries))
    }

    /// Parse the file's bytes; `path` names it in errors.
    pub fn parse(data: &[u8], path: &Path) -> Result<StagedState> {
        let ty = Type::parse("a{sv}").map_err(|e| Error::Invalid(e.to_string()))?;
        let v = gvariant::from_bytes_lenient(&ty, data).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let target = v.vardict_lookup("target").ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            why: "no \"target\" entry".into(),
        })?;
        let target = DeploymentId::from_value(target, path, "target")?;
        let merge = v
            .vardict_lookup("merge-deployment")
            .map(|m| DeploymentId::from_value(m, path, "merge-deployment"))
            .transpose()?;
        let kargs = v
            .vardict_lookup("kargs")
            .and_then(Value::as_array)
            .map(|a| Kargs::from_args(&a.iter().filter_map(Value::as_str).collect::<Vec<_>>()));
        let locked = matches!(v.vardict_lookup("locked"), Some(Value::Bool(true)));
        Ok(StagedState {
            target,
            merge,
            kargs,
            locked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: u8, serial: u32) -> DeploymentId {
        DeploymentId {
            osname: "testos".into(),
            csum: Checksum([c; 32]),
            serial,
            bootcsum: "b".repeat(64),
        }
    }

    #[test]
    fn round_trip() {
        let s = StagedState {
            target: id(1, 0),
            merge: Some(id(2, 3)),
            kargs: Some(Kargs::parse("root=LABEL=root rw")),
            locked: true,
        };
        let p = Path::new("/run/ostree/staged-deployment");
        assert_eq!(StagedState::parse(&s.to_bytes(), p).unwrap(), s);
        let minimal = StagedState {
            target: id(1, 0),
            merge: None,
            kargs: None,
            locked: false,
        };
        assert_eq!(StagedState::parse(&minimal.to_bytes(), p).unwrap(), minimal);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let p = Path::new("/run/ostree/staged-deployment");
        for data in [&b""[..], b"\x01\x02garbage"] {
            match StagedState::parse(data, p) {
                Err(e) => assert!(e.to_string().contains("staged-deployment"), "{e}"),
                Ok(s) => panic!("parsed {s:?}"),
            }
        }
        let no_target =
            gvariant::to_bytes(&Value::vardict(vec![("kargs".into(), Value::strv(&["a"]))]));
        assert!(StagedState::parse(&no_target, p).is_err());
    }
}
