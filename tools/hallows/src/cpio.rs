//! The cpio "newc" format (`070701`) the Linux kernel unpacks as its
//! initramfs: a writer for the archives `hallows linux initramfs` builds,
//! and a reader used to check them (tests, `hallows linux initramfs
//! --list`).
//!
//! Each entry is a 110-byte ASCII header (magic and 13 eight-digit hex
//! fields), the NUL-terminated name padded to 4 bytes, then the data padded
//! to 4 bytes; the archive ends with the entry `TRAILER!!!`. The kernel
//! creates directories, regular files, symbolic links (the data is the
//! target) and device nodes from it, so a device node such as
//! `/dev/console` needs no privilege on the host that writes the archive.

use anyhow::{bail, Context, Result};

/// What an entry is, with its permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its bytes.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

/// One entry: a path without a leading `/` (`bin/busybox`), the kind and
/// the permission bits (`0o755`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub perm: u32,
}

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being written, entries in order (a directory before what it
/// holds: the kernel creates each entry where it finds it).
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    ino: u32,
    names: std::collections::BTreeSet<String>,
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) -> Result<()> {
        let Ok(size) = u32::try_from(size) else { bail!("{name}: {size} bytes do not fit a newc entry (4 GiB at most)") };
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        Ok(())
    }

    /// Appends `e`. Refuses an absolute or empty name, `.`/`..` components,
    /// a name already in the archive, and an entry whose parent directory
    /// was not added before it.
    pub fn add(&mut self, e: &Entry) -> Result<()> {
        let n = &e.name;
        if n.is_empty() || n.starts_with('/') || n.ends_with('/') || n.split('/').any(|c| c.is_empty() || c == "." || c == "..") || n.contains('\0') {
            bail!("cpio entry name {n:?}: expected a relative path like \"bin/busybox\"");
        }
        if n == TRAILER {
            bail!("cpio entry name {n:?} is the end-of-archive marker");
        }
        if let Some((parent, _)) = n.rsplit_once('/') {
            if !self.names.contains(parent) {
                bail!("cpio entry {n:?} comes before its directory {parent:?}");
            }
        }
        if !self.names.insert(n.clone()) {
            bail!("cpio entry {n:?} added twice");
        }
        let perm = e.perm & 0o7777;
        match &e.kind {
            Kind::Dir => self.header(n, S_IFDIR | perm, 0, (0, 0))?,
            Kind::File(data) => {
                self.header(n, S_IFREG | perm, data.len(), (0, 0))?;
                self.out.extend_from_slice(data);
                pad4(&mut self.out);
            }
            Kind::Symlink(target) => {
                self.header(n, S_IFLNK | 0o777, target.len(), (0, 0))?;
                self.out.extend_from_slice(target.as_bytes());
                pad4(&mut self.out);
            }
            Kind::CharDev(major, minor) => self.header(n, S_IFCHR | perm, 0, (*major, *minor))?,
        }
        Ok(())
    }

    /// Adds every missing parent directory of `name` (mode 0755).
    pub fn dirs_for(&mut self, name: &str) -> Result<()> {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            let d = &name[..at + i];
            if !self.names.contains(d) {
                self.add(&Entry { name: d.to_owned(), kind: Kind::Dir, perm: 0o755 })?;
            }
            at += i + 1;
        }
        Ok(())
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(TRAILER, 0, 0, (0, 0)).expect("the trailer always fits");
        self.out
    }
}

/// Reads a whole newc archive back (up to its trailer), checking every
/// header, the padding and that nothing but zeros follows the trailer.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let h = bytes.get(at..at + 110).with_context(|| format!("cpio: truncated header at byte {at}"))?;
        if &h[..6] != MAGIC {
            bail!("cpio: no newc magic at byte {at}");
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).ok().context("cpio: non-ASCII header field")?;
            u32::from_str_radix(s, 16).with_context(|| format!("cpio: header field {s:?} at byte {at} is not hex"))
        };
        let (mode, size, rmaj, rmin, namesize) = (field(1)?, field(6)? as usize, field(9)?, field(10)?, field(11)? as usize);
        let name_at = at + 110;
        let name = bytes.get(name_at..name_at + namesize).context("cpio: truncated name")?;
        let Some((&0, name)) = name.split_last() else { bail!("cpio: name at byte {name_at} not NUL-terminated") };
        let name = String::from_utf8(name.to_vec()).context("cpio: name is not UTF-8")?;
        let data_at = (name_at + namesize).next_multiple_of(4);
        let data = bytes.get(data_at..data_at + size).with_context(|| format!("cpio: {name}: truncated data"))?;
        at = (data_at + size).next_multiple_of(4);
        if name == TRAILER {
            if bytes[at.min(bytes.len())..].iter().any(|&b| b != 0) {
                bail!("cpio: bytes after the trailer");
            }
            return Ok(out);
        }
        let kind = match mode & 0o170000 {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File(data.to_vec()),
            S_IFLNK => Kind::Symlink(String::from_utf8(data.to_vec()).context("cpio: link target is not UTF-8")?),
            S_IFCHR => Kind::CharDev(rmaj, rmin),
            other => bail!("cpio: {name}: unsupported file type {other:o}"),
        };
        out.push(Entry { name, kind, perm: mode & 0o7777 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, kind: Kind, perm: u32) -> Entry {
        Entry { name: name.into(), kind, perm }
    }

    #[test]
    fn an_archive_reads_back_entry_for_entry() {
        let entries = vec![
            e("bin", Kind::Dir, 0o755),
            e("bin/busybox", Kind::File(b"\x7fELF and more".to_vec()), 0o755),
            e("bin/sh", Kind::Symlink("busybox".into()), 0o777),
            e("dev", Kind::Dir, 0o755),
            e("dev/console", Kind::CharDev(5, 1), 0o600),
            e("init", Kind::File(b"#!/bin/sh\n".to_vec()), 0o755),
            e("empty", Kind::File(Vec::new()), 0o644),
        ];
        let mut w = Writer::new();
        for x in &entries {
            w.add(x).unwrap();
        }
        let bytes = w.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(read(&bytes).unwrap(), entries);
        // The exact header of the first entry (ino 1, a directory 0755,
        // name "bin" with its NUL: 4 bytes).
        let want = ["070701", "00000001", "000041ed", "00000000", "00000000", "00000001", "00000000", "00000000", "00000000", "00000000", "00000000", "00000000", "00000004", "00000000"].concat();
        assert_eq!(&bytes[..110], want.as_bytes());
        assert_eq!(&bytes[110..116], b"bin\0\0\0");
    }

    #[test]
    fn bad_names_and_orders_are_refused() {
        let mut w = Writer::new();
        for bad in ["", "/init", "a//b", "../x", "a/./b", "dir/", "TRAILER!!!"] {
            assert!(w.add(&e(bad, Kind::Dir, 0o755)).is_err(), "{bad:?}");
        }
        assert!(w.add(&e("bin/sh", Kind::Symlink("busybox".into()), 0)).unwrap_err().to_string().contains("before its directory \"bin\""));
        w.dirs_for("lib/modules/6.1/kernel/x.ko").unwrap();
        w.add(&e("lib/modules/6.1/kernel/x.ko", Kind::File(vec![1]), 0o644)).unwrap();
        assert!(w.add(&e("lib", Kind::Dir, 0o755)).unwrap_err().to_string().contains("added twice"));
        let names: Vec<String> = read(&w.finish()).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["lib", "lib/modules", "lib/modules/6.1", "lib/modules/6.1/kernel", "lib/modules/6.1/kernel/x.ko"]);
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let mut w = Writer::new();
        w.add(&e("init", Kind::File(b"hello".to_vec()), 0o755)).unwrap();
        let good = w.finish();
        for cut in [0, 5, 50, 113, 120, good.len() - 4] {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = b'1';
        assert!(read(&bad).is_err());
        let mut bad = good.clone();
        bad[6 + 8 * 6] = b'g';
        assert!(read(&bad).unwrap_err().to_string().contains("not hex"));
        let mut junk = good;
        junk.extend_from_slice(b"junk");
        assert!(read(&junk).unwrap_err().to_string().contains("after the trailer"));
    }
}
