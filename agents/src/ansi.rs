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
        Self { parser: vte::Parser::new() }
    }

    /// Append the text view of `raw` to `out`. State carries over between calls, so
    /// an escape sequence or a UTF-8 character split across chunks is handled.
    /// Invalid UTF-8 becomes U+FFFD.
    pub fn filter(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        self.parser.advance(&mut TextOnly { out }, raw);
    }
}

struct TextOnly<'a> {
    out: &'a mut Vec<u8>,
}

impl vte::Perform for TextOnly<'_> {
    fn print(&mut self, c: char) {
        let mut utf8 = [0u8; 4];
        self.out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn execute(&mut self, byte: u8) {
        // Keep what shapes lines and what a person can type (^C, ^D...); drop padding,
        // bells, charset shifts and flow-control characters.
        match byte {
            0x00 | 0x07 | 0x0e | 0x0f | 0x11 | 0x13 => {}
            0x80..=0xff => {}
            _ => self.out.push(byte),
        }
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

    #[test]
    fn osc_terminated_by_st_and_charset_selection_are_removed() {
        assert_eq!(filter_in_chunks(b"x\x1b]2;title\x1b\\y\x1b(Bz", 2), b"xyz");
    }
}
