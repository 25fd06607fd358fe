use super::content::{xattrs_canonical, xattrs_from_value, xattrs_value};
use super::{FormatError, PERMISSION_BITS, S_IFDIR, S_IFMT, Xattrs, be32};
use crate::checksum::Checksum;
use crate::gvariant::{self, Type, Value};
use std::sync::LazyLock;

static TYPE: LazyLock<Type> = LazyLock::new(|| Type::parse("(uuua(ayay))").expect("static type"));

/// Directory metadata `(uuua(ayay))`: owner, mode (with `S_IFDIR`) and xattrs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Xattrs,
}

impl DirMeta {
    pub fn new(uid: u32, gid: u32, mode: u32, xattrs: Xattrs) -> DirMeta {
        DirMeta {
            uid,
            gid,
            mode: S_IFDIR | (mode & PERMISSION_BITS),
            xattrs,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        gvariant::to_bytes(&Value::Tuple(vec![
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            xattrs_value(&self.xattrs),
        ]))
    }

    pub fn checksum(&self) -> Checksum {
        Checksum::of(&self.to_bytes())
    }

    pub fn parse(data: &[u8]) -> Result<DirMeta, FormatError> {
        let v = gvariant::from_bytes(&TYPE, data)?;
        let m = v.as_tuple().ok_or(FormatError::Truncated("dirmeta"))?;
        let u = |i: usize| match &m[i] {
            Value::U32(x) => Ok(x.swap_bytes()),
            _ => Err(FormatError::Truncated("dirmeta")),
        };
        let meta = DirMeta {
            uid: u(0)?,
            gid: u(1)?,
            mode: u(2)?,
            xattrs: xattrs_from_value(&m[3])?,
        };
        if meta.mode & S_IFMT != S_IFDIR || meta.mode & !(S_IFMT | PERMISSION_BITS) != 0 {
            return Err(FormatError::BadMode {
                what: "directory",
                mode: meta.mode,
            });
        }
        if !xattrs_canonical(&meta.xattrs) {
            return Err(FormatError::BadXattrs);
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let d = DirMeta::new(0, 0, 0o755, vec![]);
        assert_eq!(hex::encode(d.to_bytes()), "0000000000000000000041ed");
        assert_eq!(
            d.checksum().to_hex(),
            "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488"
        );
        let x = DirMeta::new(
            1000,
            100,
            0o755,
            vec![(b"user.dirattr".to_vec(), b"v".to_vec())],
        );
        assert_eq!(
            x.checksum().to_hex(),
            "ba0718cdee75d7f367f711f801eb354367cb9d3af91fe2391428586c36e70132"
        );
        assert_eq!(DirMeta::parse(&x.to_bytes()).unwrap(), x);
    }

    #[test]
    fn refuses_non_directory_mode() {
        let mut d = DirMeta::new(0, 0, 0o755, vec![]);
        d.mode = 0o100755;
        assert!(DirMeta::parse(&d.to_bytes()).is_err());
    }
}
