//! Architecture names: Debian's (`amd64`), the kernel's (`x86_64`) and systemd's
//! (`x86-64`, the one `ARCHITECTURE=` in an extension-release file uses).

/// (Debian architecture, systemd architecture).
const DEBIAN: &[(&str, &str)] = &[
    ("alpha", "alpha"),
    ("amd64", "x86-64"),
    ("arm64", "arm64"),
    ("armel", "arm"),
    ("armhf", "arm"),
    ("hppa", "parisc"),
    ("i386", "x86"),
    ("ia64", "ia64"),
    ("loong64", "loongarch64"),
    ("m68k", "m68k"),
    ("mips64el", "mips64-le"),
    ("mipsel", "mips-le"),
    ("ppc64", "ppc64"),
    ("ppc64el", "ppc64-le"),
    ("riscv64", "riscv64"),
    ("s390x", "s390x"),
    ("sh4", "sh"),
    ("sparc64", "sparc64"),
];

/// systemd's name for a Debian architecture.
pub fn from_debian(arch: &str) -> Option<&'static str> {
    DEBIAN.iter().find(|(d, _)| *d == arch).map(|(_, s)| *s)
}

/// systemd's name for a kernel machine name (`uname -m`).
pub fn from_uname(machine: &str) -> String {
    match machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "ppc64le" => "ppc64-le",
        "ppc64" => "ppc64",
        "ppc" => "ppc",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        "mips64" => "mips64",
        "parisc" | "parisc64" => "parisc",
        m if m.starts_with("armv") && m.ends_with('b') => "arm-be",
        m if m.starts_with("arm") => "arm",
        other => other,
    }
    .to_string()
}

/// systemd's name for the running kernel's architecture.
pub fn host() -> String {
    let uname = rustix::system::uname();
    from_uname(&uname.machine().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(DEBIAN.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(from_debian("amd64"), Some("x86-64"));
        assert_eq!(from_debian("arm64"), Some("arm64"));
        assert_eq!(from_debian("armhf"), Some("arm"));
        assert_eq!(from_debian("nope"), None);
        assert_eq!(from_uname("x86_64"), "x86-64");
        assert_eq!(from_uname("aarch64"), "arm64");
        assert_eq!(from_uname("armv7l"), "arm");
        assert!(!host().is_empty());
    }
}
