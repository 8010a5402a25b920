//! Format detection from magic bytes.
//!
//! Only the first [`HEAD_LEN`] bytes and the last 512 bytes are read: every
//! signature we look for lives there, and an upload may be many GiB.

use std::io::{self, Read, Seek, SeekFrom};

use crate::DetectedFormat;

/// How much of the start of the file is read for detection. Covers the ISO 9660
/// descriptors (up to 0x9006) and any qcow2 header with 64 KiB clusters.
pub(crate) const HEAD_LEN: u64 = 64 * 1024;

/// Size of the VHD (and DMG) trailer that may sit at the end of a file.
const TAIL_LEN: u64 = 512;

/// QEMU probes the first 2048 bytes; the VMDK descriptor heuristic mirrors it.
const QEMU_PROBE_LEN: usize = 2048;

/// The bytes detection looks at, plus the file length.
pub(crate) struct Probe {
    /// Length of the file (from seeking to its end).
    pub len: u64,
    /// Up to [`HEAD_LEN`] bytes from offset 0 (shorter if the file is).
    pub head: Vec<u8>,
    /// The last 512 bytes, when the file has at least that many.
    pub tail: Option<Vec<u8>>,
}

/// Reads the head and tail of `r`, never more than about 64.5 KiB.
pub(crate) fn read_probe<R: Read + Seek>(r: &mut R) -> io::Result<Probe> {
    let len = r.seek(SeekFrom::End(0))?;
    let head = read_at(r, 0, HEAD_LEN.min(len))?;
    let tail = if len >= TAIL_LEN {
        let t = read_at(r, len - TAIL_LEN, TAIL_LEN)?;
        // A reader shorter than it claimed (file truncated meanwhile) has no tail.
        (t.len() as u64 == TAIL_LEN).then_some(t)
    } else {
        None
    };
    Ok(Probe { len, head, tail })
}

/// Reads up to `n` bytes at `offset`; fewer if the reader ends first.
pub(crate) fn read_at<R: Read + Seek>(r: &mut R, offset: u64, n: u64) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(4 << 20));
    r.by_ref().take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// True when `buf` holds `magic` at `offset`.
fn has_at(buf: &[u8], offset: usize, magic: &[u8]) -> bool {
    buf.get(offset..offset.saturating_add(magic.len())) == Some(magic)
}

/// Decides what the bytes really are. Formats with a magic number at offset 0
/// come first (QEMU gives them priority over raw too), then trailers, then
/// ISO 9660, and anything else is raw.
pub(crate) fn detect(p: &Probe) -> DetectedFormat {
    let h = p.head.as_slice();
    if has_at(h, 0, b"QFI\xfb") {
        // Same magic for qcow (v1) and qcow2; QEMU tells them apart by version.
        // Any other version is still called qcow2 so the parser can refuse it.
        return match h.get(4..8) {
            Some([0, 0, 0, 1]) => DetectedFormat::Other("qcow"),
            _ => DetectedFormat::Qcow2,
        };
    }
    let at_start: &[(&[u8], DetectedFormat)] = &[
        (b"QED\0", DetectedFormat::Qed),
        (b"KDMV", DetectedFormat::Vmdk), // VMDK4 sparse extent
        (b"COWD", DetectedFormat::Vmdk), // VMDK3 (ESX) sparse extent
        (b"vhdxfile", DetectedFormat::Vhdx),
        (b"conectix", DetectedFormat::Vhd),
        (b"LUKS\xba\xbe", DetectedFormat::Luks),
        (b"WithoutFreeSpace", DetectedFormat::Other("parallels")),
        (b"WithouFreSpacExt", DetectedFormat::Other("parallels")),
        (b"Bochs Virtual HD Image", DetectedFormat::Other("bochs")),
        (
            b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n",
            DetectedFormat::Other("cloop"),
        ),
    ];
    if let Some((_, f)) = at_start.iter().find(|(m, _)| has_at(h, 0, m)) {
        return *f;
    }
    // VDI: a 64-byte text banner, then the little-endian signature 0xbeda107f.
    if has_at(h, 0x40, &0xbeda_107f_u32.to_le_bytes()) {
        return DetectedFormat::Vdi;
    }
    if is_vmdk_descriptor(h) {
        return DetectedFormat::Vmdk;
    }
    if let Some(t) = &p.tail {
        // A fixed VHD is raw data plus a 512-byte footer; QEMU's vpc driver
        // reads it there, so it is not plain raw.
        if has_at(t, 0, b"conectix") {
            return DetectedFormat::Vhd;
        }
        // DMG "koly" trailer: magic, version 4, header size 512.
        if has_at(t, 0, b"koly\0\0\0\x04\0\0\x02\0") {
            return DetectedFormat::Other("dmg");
        }
    }
    // ISO 9660 volume descriptors start at sector 16 (0x8000) of 2 KiB sectors;
    // "CD001" follows the type byte. Check the first three descriptors.
    if [0x8001, 0x8801, 0x9001]
        .iter()
        .any(|&o| has_at(h, o, b"CD001"))
    {
        return DetectedFormat::Iso;
    }
    DetectedFormat::Raw
}

/// A VMDK text descriptor (which names extent files by host path). Accepts our
/// own rule, a leading "# Disk DescriptorFile", and QEMU's looser probe
/// (comment and blank lines, then `version=N`) so nothing QEMU would open as
/// VMDK slips through as raw.
fn is_vmdk_descriptor(head: &[u8]) -> bool {
    if head.starts_with(b"# Disk DescriptorFile") {
        return true;
    }
    let buf = &head[..head.len().min(QEMU_PROBE_LEN)];
    let mut lines = buf.split_inclusive(|&b| b == b'\n');
    for line in lines.by_ref() {
        if line.first() == Some(&b'#') {
            continue;
        }
        if line.first() == Some(&b' ') {
            // Only blank lines (spaces, optional CR) may precede `version=`.
            let spaces = line.iter().take_while(|&&b| b == b' ').count();
            let rest = &line[spaces..];
            if matches!(rest, [] | [b'\n'] | [b'\r', b'\n'] | [b'\r']) {
                continue;
            }
            return false;
        }
        return [b"1", b"2", b"3"].iter().any(|v| {
            let mut lf = b"version=".to_vec();
            lf.extend_from_slice(*v);
            let mut crlf = lf.clone();
            lf.push(b'\n');
            crlf.extend_from_slice(b"\r\n");
            line == lf.as_slice() || line == crlf.as_slice()
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn detect_bytes(b: &[u8]) -> DetectedFormat {
        detect(&read_probe(&mut Cursor::new(b)).unwrap())
    }

    fn with_at(len: usize, offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[offset..offset + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn magic_at_start() {
        let cases: &[(&[u8], DetectedFormat)] = &[
            (b"QFI\xfb\0\0\0\x03", DetectedFormat::Qcow2),
            (b"QFI\xfb\0\0\0\x02", DetectedFormat::Qcow2),
            (b"QFI\xfb\0\0\0\x09", DetectedFormat::Qcow2),
            (b"QFI\xfb", DetectedFormat::Qcow2),
            (b"QFI\xfb\0\0\0\x01", DetectedFormat::Other("qcow")),
            (b"QED\0", DetectedFormat::Qed),
            (b"KDMV\x01\0\0\0", DetectedFormat::Vmdk),
            (b"COWD", DetectedFormat::Vmdk),
            (b"vhdxfile", DetectedFormat::Vhdx),
            (b"conectix", DetectedFormat::Vhd),
            (b"LUKS\xba\xbe\0\x02", DetectedFormat::Luks),
            (b"WithoutFreeSpace", DetectedFormat::Other("parallels")),
            (b"Bochs Virtual HD Image\0", DetectedFormat::Other("bochs")),
        ];
        for (magic, want) in cases {
            assert_eq!(detect_bytes(&with_at(4096, 0, magic)), *want, "{magic:?}");
            // Exactly the magic and nothing else must not confuse the reader.
            assert_eq!(detect_bytes(magic), *want, "short {magic:?}");
        }
    }

    #[test]
    fn vdi_signature() {
        let mut v = with_at(512, 0, b"<<< Oracle VM VirtualBox Disk Image >>>\n");
        v[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(detect_bytes(&v), DetectedFormat::Vdi);
    }

    #[test]
    fn vmdk_descriptors() {
        let text = b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"/etc/shadow\" 0\n";
        assert_eq!(detect_bytes(text), DetectedFormat::Vmdk);
        // QEMU also probes a descriptor without the usual first comment.
        assert_eq!(
            detect_bytes(b"version=1\nRW 1 FLAT \"/etc/shadow\" 0\n"),
            DetectedFormat::Vmdk
        );
        assert_eq!(
            detect_bytes(b"# x\n   \r\nversion=3\r\nRW"),
            DetectedFormat::Vmdk
        );
        assert_eq!(
            detect_bytes(b"# comment\n  \nversion=2\n"),
            DetectedFormat::Vmdk
        );
        // Not descriptors.
        assert_eq!(
            detect_bytes(b"# just a comment\nhello\n"),
            DetectedFormat::Raw
        );
        assert_eq!(detect_bytes(b"  x\nversion=1\n"), DetectedFormat::Raw);
        assert_eq!(detect_bytes(b"version=4\n"), DetectedFormat::Raw);
        assert_eq!(detect_bytes(b"version=1"), DetectedFormat::Raw);
    }

    #[test]
    fn vhd_footer_and_dmg_trailer() {
        let mut v = vec![0u8; 8192];
        v[8192 - 512..8192 - 504].copy_from_slice(b"conectix");
        assert_eq!(detect_bytes(&v), DetectedFormat::Vhd);
        // Exactly one footer and nothing else.
        assert_eq!(detect_bytes(&v[8192 - 512..]), DetectedFormat::Vhd);
        let mut d = vec![0u8; 8192];
        d[8192 - 512..8192 - 500].copy_from_slice(b"koly\0\0\0\x04\0\0\x02\0");
        assert_eq!(detect_bytes(&d), DetectedFormat::Other("dmg"));
    }

    #[test]
    fn iso9660_offsets() {
        for off in [0x8001, 0x8801, 0x9001] {
            assert_eq!(
                detect_bytes(&with_at(0xa000, off, b"CD001")),
                DetectedFormat::Iso
            );
        }
        assert_eq!(
            detect_bytes(&with_at(0xa000, 0x8002, b"CD001")),
            DetectedFormat::Raw
        );
        // A signature cut off by the end of the file is not a signature.
        assert_eq!(
            detect_bytes(&with_at(0x8005, 0x8001, b"CD00")),
            DetectedFormat::Raw
        );
        // A qcow2 header wins over a CD001 inside the image (QEMU agrees).
        let mut v = with_at(0xa000, 0x8001, b"CD001");
        v[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
        assert_eq!(detect_bytes(&v), DetectedFormat::Qcow2);
    }

    #[test]
    fn raw() {
        assert_eq!(detect_bytes(b""), DetectedFormat::Raw);
        assert_eq!(detect_bytes(&[0u8; 1 << 20]), DetectedFormat::Raw);
        assert_eq!(
            detect_bytes(b"\xeb\x63\x90\x10\x8e\xd0\xbc\0"),
            DetectedFormat::Raw
        );
        assert_eq!(detect_bytes(b"QFI"), DetectedFormat::Raw);
    }
}
