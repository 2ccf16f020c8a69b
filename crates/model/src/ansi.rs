//! Strips terminal control sequences from console output for *matching* only.
//!
//! Device shells decorate their output: busybox asks for the cursor position
//! (`ESC[6n`), prompts are coloured, some set the window title (OSC). A pattern like
//! `root@ru1:~# $` must match whatever the decoration, and a sequence can be split
//! across two reads. vte's parser (the one alacritty uses) is a complete, streaming
//! VT state machine, so the filter keeps one alive per stream and passes on only
//! printable text and the few control characters a pattern may care about. The
//! transcript is never filtered: it keeps the raw bytes.

/// A streaming filter: feed raw chunks in order, get the text view.
pub struct AnsiFilter {
    parser: vte::Parser,
    /// The parser is known to be in its ground state with no partial character, so
    /// plain text can be copied without it (see [`AnsiFilter::filter`]).
    ground: bool,
}

impl Default for AnsiFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AnsiFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnsiFilter").finish_non_exhaustive()
    }
}

impl AnsiFilter {
    pub fn new() -> Self {
        Self { parser: vte::Parser::new(), ground: true }
    }

    /// Append the text view of `raw` to `out`. State carries over between calls, so
    /// an escape sequence or a UTF-8 character split across chunks is handled.
    /// Invalid UTF-8 becomes U+FFFD.
    ///
    /// Console output is mostly plain text, and vte hands it over one character at a
    /// time. While the parser is known to be in its ground state, the text up to the
    /// next ESC (or the next byte that is not complete, valid UTF-8) is therefore
    /// copied here with exactly the rules vte's ground state applies; vte takes over
    /// from there and hands back once a sequence it dispatches puts it in its ground
    /// state again. The output is byte for byte vte's (tested).
    pub fn filter(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        // Nearly every byte of console text is printed as itself.
        out.reserve(raw.len());
        let mut rest = raw;
        while !rest.is_empty() {
            if self.ground {
                rest = &rest[ground_text(rest, out)..];
                if rest.is_empty() {
                    break;
                }
                self.ground = false;
            }
            let mut text = TextOnly { out, ground: false };
            let used = self.parser.advance_until_terminated(&mut text, rest);
            self.ground = text.ground;
            rest = &rest[used..];
        }
    }
}

/// What vte's ground state makes of the longest prefix of `raw` that holds no ESC and
/// only complete, valid UTF-8 (C0 controls executed, C1 controls executed, every
/// other character printed); returns that prefix's length.
fn ground_text(raw: &[u8], out: &mut Vec<u8>) -> usize {
    let end = raw.iter().position(|&byte| byte == 0x1b).unwrap_or(raw.len());
    let valid = match std::str::from_utf8(&raw[..end]) {
        Ok(_) => end,
        Err(err) => err.valid_up_to(),
    };
    let text = &raw[..valid];
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        if (0x20..0x80).contains(&byte) {
            let run = text[at..].iter().position(|b| !(0x20..0x80).contains(b)).map_or(text.len(), |n| at + n);
            out.extend_from_slice(&text[at..run]);
            at = run;
        } else if byte < 0x20 {
            keep_control(byte, out);
            at += 1;
        } else {
            // The first byte of a character of 2 to 4 bytes (the text is valid UTF-8).
            let len = match byte {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            // U+0080..U+009F (C1 controls) are executed, which drops them.
            if !(byte == 0xc2 && text[at + 1] <= 0x9f) {
                out.extend_from_slice(&text[at..at + len]);
            }
            at += len;
        }
    }
    valid
}

/// A control character vte executes: keep what shapes lines and what a person can
/// type (^C, ^D...); drop padding, bells, charset shifts and flow-control characters.
#[inline]
fn keep_control(byte: u8, out: &mut Vec<u8>) {
    match byte {
        0x00 | 0x07 | 0x0e | 0x0f | 0x11 | 0x13 => {}
        0x80..=0xff => {}
        _ => out.push(byte),
    }
}

struct TextOnly<'a> {
    out: &'a mut Vec<u8>,
    /// Set once a dispatched sequence has left the parser in its ground state.
    ground: bool,
}

impl vte::Perform for TextOnly<'_> {
    #[inline]
    fn print(&mut self, c: char) {
        // Called once per character of text: an ASCII one is a single push, not a copy.
        if c.is_ascii() {
            self.out.push(c as u8);
        } else {
            let mut utf8 = [0u8; 4];
            self.out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }

    #[inline]
    fn execute(&mut self, byte: u8) {
        keep_control(byte, self.out);
    }

    // vte enters its ground state right after each of these (for an OSC string, only
    // when BEL ends it), with no partial character pending.
    fn csi_dispatch(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
        self.ground = true;
    }

    fn esc_dispatch(&mut self, _: &[u8], _: bool, _: u8) {
        self.ground = true;
    }

    fn osc_dispatch(&mut self, _: &[&[u8]], bell_terminated: bool) {
        self.ground |= bell_terminated;
    }

    fn terminated(&self) -> bool {
        self.ground
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_in_chunks(raw: &[u8], chunk: usize) -> Vec<u8> {
        let mut filter = AnsiFilter::new();
        let mut out = Vec::new();
        for piece in raw.chunks(chunk) {
            filter.filter(piece, &mut out);
        }
        out
    }

    #[test]
    fn busybox_prompt_decorations_vanish_at_any_split() {
        let raw = b"\x1b[6n\x1b]0;root@ru1: ~\x07\x1b[1;32mroot@ru1\x1b[0m:\x1b[1;34m~\x1b[0m# ";
        for chunk in 1..=raw.len() {
            assert_eq!(filter_in_chunks(raw, chunk), b"root@ru1:~# ", "chunk size {chunk}");
        }
    }

    #[test]
    fn line_structure_and_utf8_survive_splits() {
        let raw = "boot \u{00b5}s \u{2713}\r\nline2\tx\x1b[K\r\n".as_bytes();
        for chunk in 1..=raw.len() {
            assert_eq!(filter_in_chunks(raw, chunk), "boot \u{00b5}s \u{2713}\r\nline2\tx\r\n".as_bytes());
        }
    }

    #[test]
    fn bells_and_nul_padding_are_dropped_but_control_keys_kept() {
        assert_eq!(filter_in_chunks(b"a\x07b\x00c\x03d\x08", 3), b"abc\x03d\x08");
    }

    /// vte alone, one character at a time: what the fast path must equal.
    fn through_vte_only(raw: &[u8], chunk: usize) -> Vec<u8> {
        let mut parser = vte::Parser::new();
        let mut out = Vec::new();
        for piece in raw.chunks(chunk) {
            parser.advance(&mut TextOnly { out: &mut out, ground: false }, piece);
        }
        out
    }

    #[test]
    fn copying_plain_text_past_vte_changes_nothing_at_any_split() {
        let mut soup: Vec<u8> = Vec::new();
        let pieces: [&[u8]; 16] = [
            b"[    0.000000] Linux version 6.1\r\n",
            b"\x1b[6n",
            b"\x1b]0;title\x07",
            b"\x1b]2;other\x1b\\",
            "µs ✓ \u{85}nel \u{9f} \u{a0}nbsp".as_bytes(),
            b"\xff\xfe bad \xc3",
            b"\xc2\x85 split C1",
            b"\x1b[1;32mgreen\x1b[0m",
            b"\x1b(B\x1bc",
            b"\x07\x00\x0e\x0f\x11\x13\x03\x08\t\x7f",
            b"\x1b[?25l\x18abort\x1b[1\x1ax",
            b"\x1bP1$r\x1b\\dcs",
            b"\x1b[99999999999999999999;1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18m",
            b"\x9b31m eight-bit CSI",
            "\u{1F600}\u{10FFFF}end".as_bytes(),
            b"\xe2\x9c",
        ];
        for round in 0..6usize {
            for (i, piece) in pieces.iter().enumerate() {
                soup.extend_from_slice(pieces[(i * 7 + round * 3) % pieces.len()]);
                soup.extend_from_slice(piece);
            }
        }
        for chunk in [1, 2, 3, 5, 7, 13, 64, 4096] {
            assert_eq!(filter_in_chunks(&soup, chunk), through_vte_only(&soup, chunk), "chunk size {chunk}");
        }
    }

    #[test]
    fn copying_plain_text_past_vte_changes_nothing_on_random_bytes() {
        // Bytes that steer vte between its states, plus plain text and UTF-8 pieces.
        let alphabet: &[&[u8]] = &[
            b"\x1b",
            b"[",
            b"]",
            b"P",
            b"X",
            b"^",
            b"_",
            b"\\",
            b"(",
            b"?",
            b";",
            b"0",
            b"9",
            b"m",
            b"H",
            b"\x07",
            b"\x18",
            b"\x1a",
            b"\x9c",
            b"\x90",
            b"\x9b",
            b"\x9d",
            b"\r\n",
            b"abc",
            b" ",
            b"\xc2",
            b"\x85",
            b"\xe2\x9c",
            b"\x93",
            b"\xf0\x9f",
            b"\x98\x80",
            b"\xff",
            b"\x7f",
            b"\x00",
            b"\x1b\\",
            b"$",
            b"q",
            b"\x1b[",
            b"\x1b]",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut raw = Vec::new();
            for _ in 0..next() % 200 {
                raw.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let chunk = 1 + (next() % 9) as usize;
            assert_eq!(filter_in_chunks(&raw, chunk), through_vte_only(&raw, chunk), "{raw:?} in chunks of {chunk}");
        }
    }

    #[test]
    fn osc_terminated_by_st_and_charset_selection_are_removed() {
        assert_eq!(filter_in_chunks(b"x\x1b]2;title\x1b\\y\x1b(Bz", 2), b"xyz");
    }
}
