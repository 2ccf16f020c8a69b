//! The simulated devices' program files: small ELF images that carry what a real
//! daemon's headers carry about its build (TS 33.117 4.3.3.1.5), and nothing else.
//! A hardened build is what Debian's `dpkg-buildflags` give (PIE, non-executable
//! stack, RELRO with BIND_NOW, the stack protector); a careless build is the compiler's
//! oldest defaults (fixed address, executable stack, no RELRO, no stack protector).
//! There is no code in them: the simulated shell never runs a program file, it only
//! shows its bytes (`od`, `cat`).

/// How a program was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    Hardened,
    Careless,
}

const EHDR: usize = 64;
const PHDR: usize = 56;
const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_FLAGS: u64 = 30;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_BIND_NOW: u64 = 8;
const DF_1_NOW: u64 = 1;
const DF_1_PIE: u64 = 0x0800_0000;

/// The ELF image (x86-64, little endian) of a dynamically linked program built so.
pub fn elf_image(build: Build) -> Vec<u8> {
    let hardened = build == Build::Hardened;
    // A position-independent program is linked at 0; a fixed one where x86-64 puts it.
    let base: u64 = if hardened { 0 } else { 0x40_0000 };
    let strings: &[u8] = if hardened { b"\0libc.so.6\0puts\0recv\0__stack_chk_fail\0" } else { b"\0libc.so.6\0puts\0recv\0strcpy\0" };
    let mut dynamic = vec![(DT_NEEDED, 1), (DT_STRTAB, 0), (DT_STRSZ, strings.len() as u64)];
    if hardened {
        dynamic.extend([(DT_FLAGS, DF_BIND_NOW), (DT_FLAGS_1, DF_1_NOW | DF_1_PIE)]);
    }
    dynamic.push((DT_NULL, 0));

    let segments = if hardened { 6 } else { 5 };
    let interp_at = EHDR + segments * PHDR;
    let strings_at = interp_at + INTERP.len();
    let dynamic_at = (strings_at + strings.len()).next_multiple_of(8);
    let dynamic_len = dynamic.len() * 16;
    let end = (dynamic_at + dynamic_len) as u64;
    dynamic[1].1 = base + strings_at as u64;

    let mut out = Vec::with_capacity(end as usize);
    // ELF header: class 64, little endian, version 1, System V ABI.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(if hardened { 3u16 } else { 2 }).to_le_bytes()); // ET_DYN / ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(base + end).to_le_bytes()); // entry: nothing runs here
    out.extend_from_slice(&(EHDR as u64).to_le_bytes()); // program headers follow
    out.extend_from_slice(&0u64.to_le_bytes()); // no section headers, as `sstrip` leaves a program
    out.extend_from_slice(&0u32.to_le_bytes());
    for half in [EHDR as u16, PHDR as u16, segments as u16, 64, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    let mut segment = |kind: u32, flags: u32, offset: u64, size: u64, align: u64| {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for word in [offset, base + offset, base + offset, size, size, align] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    };
    segment(PT_PHDR, PF_R, EHDR as u64, (segments * PHDR) as u64, 8);
    segment(PT_INTERP, PF_R, interp_at as u64, INTERP.len() as u64, 1);
    segment(PT_LOAD, PF_R | PF_X, 0, end, 0x1000);
    segment(PT_DYNAMIC, PF_R | PF_W, dynamic_at as u64, dynamic_len as u64, 8);
    segment(PT_GNU_STACK, if hardened { PF_R | PF_W } else { PF_R | PF_W | PF_X }, 0, 0, 16);
    if hardened {
        segment(PT_GNU_RELRO, PF_R, dynamic_at as u64, dynamic_len as u64, 1);
    }
    out.extend_from_slice(INTERP);
    out.extend_from_slice(strings);
    out.resize(dynamic_at, 0);
    for (tag, value) in dynamic {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Where the tester's packages lie on every simulated device (TS 33.117 4.2.3.3.5): the
/// vendor's genuine firmware package, and a copy with one byte changed.
pub const GENUINE_PACKAGE: &str = "/var/lib/updates/firmware-4.2.1.pkg";
pub const TAMPERED_PACKAGE: &str = "/var/lib/updates/firmware-4.2.1-tampered.pkg";

/// The vendor's firmware package as released: a header, then the payload. What
/// `fw-install` of a hardened device accepts, byte for byte (its stand-in for a
/// signature check against the vendor's release key).
pub fn genuine_package() -> Vec<u8> {
    let mut bytes = b"RUPKG1\nname=firmware\nversion=4.2.1\nsigner=RU vendor release key\n\n".to_vec();
    bytes.extend((0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    bytes
}

/// The genuine package with the byte in its middle changed, as a tester prepares one.
pub fn tampered_package() -> Vec<u8> {
    let mut bytes = genuine_package();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// binutils' `readelf`, a reader proofrig's authors did not write, sees the build as meant.
    #[test]
    fn readelf_reads_each_build_as_meant() {
        let dir = tempfile::tempdir().unwrap();
        for (build, expected, absent) in [
            (Build::Hardened, &["DYN (", "GNU_STACK", "GNU_RELRO", "BIND_NOW", "NOW PIE", "[libc.so.6]"][..], &["RWE"][..]),
            (Build::Careless, &["EXEC (", "RWE", "[libc.so.6]"][..], &["GNU_RELRO", "BIND_NOW"][..]),
        ] {
            let path = dir.path().join(format!("{build:?}"));
            std::fs::write(&path, elf_image(build)).unwrap();
            let out = std::process::Command::new("readelf")
                .args(["-h", "-l", "-d", "-W"])
                .arg(&path)
                .output()
                .expect("run readelf (binutils; scripts/test.sh installs it)");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && out.stderr.is_empty(), "{build:?}: {}", String::from_utf8_lossy(&out.stderr));
            for word in expected {
                assert!(text.contains(word), "{build:?}: readelf shows no `{word}`:\n{text}");
            }
            for word in absent {
                assert!(!text.contains(word), "{build:?}: readelf shows `{word}`:\n{text}");
            }
        }
    }
}
