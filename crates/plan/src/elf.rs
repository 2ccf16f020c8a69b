//! How a program on the device was built, read from its ELF headers: whether it is
//! position independent (so ASLR moves it), whether its stack is executable, whether
//! its relocations are read-only after start (RELRO, and BIND_NOW for all of them), and
//! whether it was compiled with the stack protector. These are the build-time half of
//! TS 33.117 4.3.3.1.5 (protection from buffer overflows); `checksec` reads the same.
//!
//! Scripts cannot hold a whole program (a Rhai string is limited to a few MB, and the
//! journal would carry megabytes per program for a few hundred bytes of facts), so the
//! file is read in pieces: [`examine`] says which byte range it needs next, the script
//! reads it on the device with `od -An -v -tx1 -j OFFSET -N LENGTH FILE` (POSIX `od`,
//! in GNU coreutils and BusyBox alike) and hands back everything read so far. The
//! pieces are the ELF header with the program headers, the dynamic section, and the
//! dynamic string table. Every piece is an ordinary recorded `ssh_exec` answer, so
//! `verify` re-derives the facts by running the same pure function on the record.

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{pod, Endianness};

/// The first read: the ELF header and, in every linker's layout, the program headers.
pub const HEAD: u64 = 4096;

/// The most bytes one piece may be: far more than any program's headers, dynamic
/// section or string table, and a bound on what a forged header can make the script
/// read from the device.
const LARGEST_PIECE: u64 = 16 << 20;

/// One piece of the file as read: where it starts, how many bytes were asked for, and
/// the bytes that came (fewer than asked: the file ends there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub asked: u64,
    pub bytes: Vec<u8>,
}

/// What [`examine`] makes of the pieces read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// Read this range next (the script reads it and asks again).
    Read {
        offset: u64,
        length: u64,
    },
    /// The file is not an ELF program, or ends inside its own headers: nothing about
    /// its build can be said.
    Unreadable(String),
    Done(Hardening),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relro {
    /// Relocations read-only after start, all bound at start (BIND_NOW), or a static
    /// program with no lazy binding at all.
    Full,
    /// Read-only after start, but lazily bound entries stay writable.
    Partial,
    None,
}

impl Relro {
    pub fn name(self) -> &'static str {
        match self {
            Relro::Full => "full",
            Relro::Partial => "partial",
            Relro::None => "none",
        }
    }
}

/// The build facts of one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub bits: u8,
    /// ET_DYN with an interpreter or DF_1_PIE: loaded at a random address.
    pub pie: bool,
    /// ET_DYN without either: a shared library, not a program.
    pub shared_object: bool,
    /// No PT_DYNAMIC: statically linked.
    pub static_link: bool,
    /// PT_GNU_STACK present and not executable.
    pub nx: bool,
    pub relro: Relro,
    /// The dynamic string table names `__stack_chk_fail` or `__stack_chk_guard`;
    /// None for a static program, whose dynamic symbols cannot say.
    pub canary: Option<bool>,
}

/// Decide from the pieces read so far what to read next, or what the file says.
pub fn examine(pieces: &[Piece]) -> Examined {
    let file = match Sparse::new(pieces) {
        Ok(file) => file,
        Err(problem) => return Examined::Unreadable(problem),
    };
    // Whatever was read of the start says already whether this is ELF at all.
    if let Some(start) = file.start() {
        if start.is_empty() {
            return Examined::Unreadable("not an ELF program: the file is empty".into());
        }
        if start.len() < 5 || &start[..4] != b"\x7fELF" {
            return Examined::Unreadable(format!("not an ELF program: it starts with {}", hex(&start[..start.len().min(8)])));
        }
    }
    let result = match file.get(0, 5) {
        Err(need) => Err(need),
        Ok(ident) => match ident[4] {
            c if c == elf::ELFCLASS32.0 => inspect::<elf::FileHeader32<Endianness>>(&file, 32),
            c if c == elf::ELFCLASS64.0 => inspect::<elf::FileHeader64<Endianness>>(&file, 64),
            class => return Examined::Unreadable(format!("an ELF file of unknown class {class}")),
        },
    };
    match result {
        Ok(hardening) => Examined::Done(hardening),
        Err(Need::Read(offset, length)) => Examined::Read { offset, length },
        Err(Need::Unreadable(problem)) => Examined::Unreadable(problem),
    }
}

/// The bytes `od -An -v -tx1` printed: two hex digits a byte, separated by white space.
pub fn od_bytes(text: &str) -> Result<Vec<u8>, String> {
    text.split_ascii_whitespace()
        .map(|word| match (word.len(), u8::from_str_radix(word, 16)) {
            (2, Ok(byte)) => Ok(byte),
            _ => Err(format!(
                "`{}` is not a byte as `od -An -v -tx1` prints one (two hex digits; `*` means -v was left out)",
                word.chars().take(20).collect::<String>()
            )),
        })
        .collect()
}

enum Need {
    Read(u64, u64),
    Unreadable(String),
}

/// The file as far as it was read: the pieces as they came. Each range the examiner
/// needs is asked for as one piece, so one piece holds it.
struct Sparse<'p> {
    pieces: &'p [Piece],
    /// Where the file ends, if a piece came back short.
    end: Option<u64>,
}

impl<'p> Sparse<'p> {
    fn new(pieces: &'p [Piece]) -> Result<Sparse<'p>, String> {
        let mut end: Option<u64> = None;
        for piece in pieces {
            let got = piece.bytes.len() as u64;
            if got > piece.asked {
                return Err(format!("{got} bytes came back for {} asked at offset {}", piece.asked, piece.offset));
            }
            if got < piece.asked {
                let stop = piece.offset.saturating_add(got);
                end = Some(end.map_or(stop, |e| e.min(stop)));
            }
        }
        Ok(Sparse { pieces, end })
    }

    /// The piece read from the start of the file, if there is one.
    fn start(&self) -> Option<&'p [u8]> {
        self.pieces.iter().find(|p| p.offset == 0).map(|p| p.bytes.as_slice())
    }

    /// Bytes `offset..offset + length`, or what to read to have them.
    fn get(&self, offset: u64, length: u64) -> Result<&'p [u8], Need> {
        let stop = offset.checked_add(length).filter(|_| length <= LARGEST_PIECE).ok_or_else(|| {
            Need::Unreadable(format!("its headers point at {length} bytes at offset {offset}, more than any program's headers"))
        })?;
        let holding = self.pieces.iter().find(|p| p.offset <= offset && stop <= p.offset + p.bytes.len() as u64);
        if let Some(piece) = holding {
            return Ok(&piece.bytes[(offset - piece.offset) as usize..(stop - piece.offset) as usize]);
        }
        match self.end {
            Some(end) if stop > end => {
                Err(Need::Unreadable(format!("the file ends at byte {end}, inside its own headers (they point at bytes {offset}..{stop})")))
            }
            _ if offset == 0 && self.pieces.is_empty() => Err(Need::Read(0, HEAD.max(length))),
            _ => Err(Need::Read(offset, length)),
        }
    }
}

fn inspect<H: FileHeader<Endian = Endianness>>(file: &Sparse, bits: u8) -> Result<Hardening, Need> {
    let unreadable = |what: &str, e: object::read::Error| Need::Unreadable(format!("{what}: {e}"));
    let head = file.get(0, std::mem::size_of::<H>() as u64)?;
    let header = H::parse(head).map_err(|e| unreadable("its ELF header", e))?;
    let endian = header.endian().map_err(|e| unreadable("its ELF header", e))?;
    let phoff: u64 = header.e_phoff(endian).into();
    let (count, size) = (usize::from(header.e_phnum(endian)), usize::from(header.e_phentsize(endian)));
    if count > 0 && size != std::mem::size_of::<H::ProgramHeader>() {
        return Err(Need::Unreadable(format!(
            "its program headers are {size} bytes each, not the {} of its class",
            std::mem::size_of::<H::ProgramHeader>()
        )));
    }
    let table = file.get(phoff, (count * size) as u64)?;
    let (segments, _) = pod::slice_from_bytes::<H::ProgramHeader>(table, count)
        .map_err(|()| Need::Unreadable("its program headers do not fit the bytes read".into()))?;

    let of_type = |t: elf::ProgramType| segments.iter().find(|p| p.p_type(endian) == t);
    let interpreter = of_type(elf::PT_INTERP).is_some();
    let nx = of_type(elf::PT_GNU_STACK).is_some_and(|p| p.p_flags(endian).0 & elf::PF_X.0 == 0);
    let relro_segment = of_type(elf::PT_GNU_RELRO).is_some();

    let mut bind_now = false;
    let mut pie_flag = false;
    let mut canary = None;
    let dynamic_segment = of_type(elf::PT_DYNAMIC);
    if let Some(dynamic) = dynamic_segment {
        let (offset, size): (u64, u64) = (dynamic.p_offset(endian).into(), dynamic.p_filesz(endian).into());
        let bytes = file.get(offset, size)?;
        let count = bytes.len() / std::mem::size_of::<H::Dyn>();
        let (entries, _) = pod::slice_from_bytes::<H::Dyn>(bytes, count)
            .map_err(|()| Need::Unreadable("its dynamic section does not fit the bytes read".into()))?;
        let (mut strtab, mut strsz) = (None, None);
        for entry in entries {
            let (tag, value) = (entry.d_tag(endian), entry.val(endian));
            if tag == elf::DT_NULL {
                break;
            }
            if tag == elf::DT_BIND_NOW || (tag == elf::DT_FLAGS && value & elf::DF_BIND_NOW.0 != 0) {
                bind_now = true;
            }
            if tag == elf::DT_FLAGS_1 {
                bind_now |= value & elf::DF_1_NOW.0 != 0;
                pie_flag = value & elf::DF_1_PIE.0 != 0;
            }
            if tag == elf::DT_STRTAB {
                strtab = Some(value);
            }
            if tag == elf::DT_STRSZ {
                strsz = Some(value);
            }
        }
        let (Some(address), Some(size)) = (strtab, strsz) else {
            return Err(Need::Unreadable("its dynamic section names no string table (DT_STRTAB, DT_STRSZ)".into()));
        };
        // The string table is given as an address; the loadable segment holding it says
        // where that address is in the file.
        let offset = segments
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .find_map(|p| {
                let (vaddr, filesz, offset): (u64, u64, u64) =
                    (p.p_vaddr(endian).into(), p.p_filesz(endian).into(), p.p_offset(endian).into());
                (vaddr <= address && address.saturating_add(size) <= vaddr.saturating_add(filesz)).then(|| offset + (address - vaddr))
            })
            .ok_or_else(|| Need::Unreadable(format!("its dynamic string table (address {address:#x}) lies in no loadable segment")))?;
        let strings = file.get(offset, size)?;
        let named = |name: &[u8]| strings.split(|b| *b == 0).any(|s| s == name);
        canary = Some(named(b"__stack_chk_fail") || named(b"__stack_chk_guard"));
    }
    let dynamic_link = dynamic_segment.is_some();
    let position_independent = header.e_type(endian) == elf::ET_DYN;
    Ok(Hardening {
        bits,
        pie: position_independent && (interpreter || pie_flag),
        shared_object: position_independent && !interpreter && !pie_flag,
        static_link: !dynamic_link,
        nx,
        relro: match (relro_segment, bind_now || !dynamic_link) {
            (false, _) => Relro::None,
            (true, true) => Relro::Full,
            (true, false) => Relro::Partial,
        },
        canary,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read `path` as a script would, piece by piece, counting the reads.
    fn examine_file(path: &str) -> (Examined, usize) {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("read {path}: {e} (scripts/test.sh installs openssh-server, dropbear-bin and busybox-static)"));
        let mut pieces = Vec::new();
        loop {
            match examine(&pieces) {
                Examined::Read { offset, length } => {
                    let start = (offset as usize).min(bytes.len());
                    let stop = (start + length as usize).min(bytes.len());
                    pieces.push(Piece { offset, asked: length, bytes: bytes[start..stop].to_vec() });
                    assert!(pieces.len() < 10, "{path}: the examiner keeps asking for more");
                }
                done => return (done, pieces.len()),
            }
        }
    }

    fn hardening(path: &str) -> Hardening {
        match examine_file(path).0 {
            Examined::Done(h) => h,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn debian_s_daemons_are_pie_nx_full_relro_with_the_stack_protector() {
        // The test command installs openssh-server and dropbear-bin; Debian builds both hardened.
        for path in ["/usr/sbin/sshd", "/usr/sbin/dropbear"] {
            let h = hardening(path);
            assert_eq!(
                h,
                Hardening {
                    bits: 64,
                    pie: true,
                    shared_object: false,
                    static_link: false,
                    nx: true,
                    relro: Relro::Full,
                    canary: Some(true)
                },
                "{path}"
            );
            assert_eq!(examine_file(path).1, 3, "{path}: the header, the dynamic section and the string table, one read each");
        }
    }

    #[test]
    fn debian_s_static_busybox_is_at_a_fixed_address_and_says_nothing_of_a_canary() {
        let h = hardening("/bin/busybox");
        assert!(!h.pie && h.static_link && !h.shared_object, "{h:?}");
        assert_eq!(h.canary, None, "a static program has no dynamic symbols to tell");
        assert!(h.nx);
    }

    #[test]
    fn a_program_built_without_hardening_flags_shows_each_missing() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("agent.c");
        std::fs::write(
            &source,
            "#include <stdio.h>\n#include <string.h>\nint main(int c, char **v) { char b[64]; strcpy(b, v[0]); puts(b); return 0; }\n",
        )
        .unwrap();
        let careless = dir.path().join("careless");
        let hardened = dir.path().join("hardened");
        let cc = |out: &std::path::Path, flags: &[&str]| {
            let status = std::process::Command::new("cc")
                .args(flags)
                .arg("-o")
                .arg(out)
                .arg(&source)
                .status()
                .expect("run cc (gcc; scripts/test.sh installs it)");
            assert!(status.success(), "cc {flags:?}");
        };
        cc(&careless, &["-no-pie", "-fno-stack-protector", "-z", "execstack", "-z", "norelro"]);
        cc(&hardened, &["-fPIE", "-pie", "-fstack-protector-strong", "-z", "relro", "-z", "now"]);
        let h = hardening(careless.to_str().unwrap());
        assert_eq!(
            h,
            Hardening {
                bits: 64,
                pie: false,
                shared_object: false,
                static_link: false,
                nx: false,
                relro: Relro::None,
                canary: Some(false)
            }
        );
        let lazy = dir.path().join("lazy");
        cc(&lazy, &["-fPIE", "-pie", "-fstack-protector-strong", "-z", "relro", "-z", "lazy"]);
        assert_eq!(hardening(lazy.to_str().unwrap()).relro, Relro::Partial);
        let h = hardening(hardened.to_str().unwrap());
        assert!(h.pie && h.nx && h.relro == Relro::Full && h.canary == Some(true), "{h:?}");
    }

    #[test]
    fn what_is_not_a_program_or_is_cut_short_is_unreadable() {
        let text = Piece { offset: 0, asked: HEAD, bytes: b"#!/bin/sh\necho hi\n".to_vec() };
        assert!(matches!(examine(&[text]), Examined::Unreadable(why) if why.contains("not an ELF program: it starts with 23 21 2f 62")));
        let short = Piece { offset: 0, asked: HEAD, bytes: b"ru1\n".to_vec() };
        assert!(matches!(examine(&[short]), Examined::Unreadable(why) if why == "not an ELF program: it starts with 72 75 31 0a"));
        let empty = Piece { offset: 0, asked: HEAD, bytes: Vec::new() };
        assert!(matches!(examine(&[empty]), Examined::Unreadable(why) if why == "not an ELF program: the file is empty"));
        // A forged string table size does not make the script read gigabytes from the device.
        let sshd = std::fs::read("/usr/sbin/sshd").expect("Debian's sshd (scripts/test.sh installs openssh-server)");
        let mut pieces = vec![Piece { offset: 0, asked: HEAD, bytes: sshd[..HEAD as usize].to_vec() }];
        let Examined::Read { offset, length } = examine(&pieces) else { panic!("sshd's dynamic section is read next") };
        let mut dynamic = sshd[offset as usize..(offset + length) as usize].to_vec();
        let strsz = dynamic.chunks(16).position(|entry| entry[..8] == 10u64.to_le_bytes()).expect("DT_STRSZ");
        dynamic[strsz * 16 + 8..strsz * 16 + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        pieces.push(Piece { offset, asked: length, bytes: dynamic });
        assert!(matches!(examine(&pieces), Examined::Unreadable(why) if why.contains("string table")), "{:?}", examine(&pieces));
        let forged = Sparse::new(&pieces).unwrap().get(4096, 1 << 40).map(<[u8]>::len).map_err(|need| match need {
            Need::Unreadable(why) => why,
            Need::Read(..) => "asked to read it".into(),
        });
        assert!(matches!(forged, Err(why) if why.contains("more than any program's headers")));
        let sshd = std::fs::read("/usr/sbin/sshd").expect("Debian's sshd (scripts/test.sh installs openssh-server)");
        let cut = Piece { offset: 0, asked: HEAD, bytes: sshd[..100].to_vec() };
        assert!(matches!(examine(&[cut]), Examined::Unreadable(why) if why.contains("the file ends at byte 100")), "{:?}", examine(&[]));
        let forged = Piece { offset: 0, asked: 4, bytes: vec![1, 2, 3, 4, 5] };
        assert!(matches!(examine(&[forged]), Examined::Unreadable(why) if why.contains("5 bytes came back for 4 asked")));
        assert_eq!(examine(&[]), Examined::Read { offset: 0, length: HEAD });
    }

    #[test]
    fn od_output_reads_back_as_its_bytes() {
        assert_eq!(od_bytes(" 7f 45 4c 46\n 02 01\n").unwrap(), vec![0x7f, 0x45, 0x4c, 0x46, 2, 1]);
        assert_eq!(od_bytes("").unwrap(), Vec::<u8>::new());
        assert!(od_bytes(" 7f 45\n*\n").unwrap_err().contains("`*` means -v was left out"));
        assert!(od_bytes("0000000 7f").is_err(), "an address column (-A left out) is refused");
    }
}
