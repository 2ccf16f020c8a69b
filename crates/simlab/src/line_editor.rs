//! Line editing the way a terminal's canonical mode does it, shared by every
//! interactive way into a simulated device (an SSH PTY shell, the serial console's
//! login, shell and bootloader prompts), so they echo and edit alike.
//!
//! It is byte-driven because both front ends receive raw bytes: CR, LF and CR LF
//! each end a line once, backspace/DEL erase a whole UTF-8 character, ^U erases
//! the line, ^C abandons it, ^D on an empty line is end of input, and escape
//! sequences (arrow keys) are swallowed rather than inserted.

/// What one input byte did to the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    /// The line is still being typed.
    Pending,
    /// Enter: the finished line, without its terminator.
    Line(String),
    /// ^C: the line was abandoned.
    Interrupt,
    /// ^D on an empty line.
    EndOfInput,
}

/// Where the editor is inside an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Started,
    Csi,
    Ss3,
}

/// A line being typed.
#[derive(Debug)]
pub(crate) struct LineEditor {
    line: Vec<u8>,
    escape: Escape,
    previous_was_cr: bool,
}

impl LineEditor {
    pub(crate) fn new() -> Self {
        LineEditor { line: Vec::new(), escape: Escape::None, previous_was_cr: false }
    }

    /// Takes one byte and appends what the terminal should show to `echo`. With
    /// `visible` false (passwords) typed characters are not shown; line endings
    /// and ^C still are.
    pub(crate) fn feed(&mut self, byte: u8, visible: bool, echo: &mut String) -> Edit {
        match self.escape {
            Escape::Started => {
                self.escape = match byte {
                    b'[' => Escape::Csi,
                    b'O' => Escape::Ss3,
                    _ => Escape::None,
                };
                return Edit::Pending;
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Edit::Pending;
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                return Edit::Pending;
            }
            Escape::None => {}
        }
        let was_cr = std::mem::replace(&mut self.previous_was_cr, byte == b'\r');
        match byte {
            // The LF of a CR LF pair: the line already ended at the CR.
            b'\n' if was_cr => Edit::Pending,
            b'\r' | b'\n' => {
                echo.push_str("\r\n");
                let line = std::mem::take(&mut self.line);
                Edit::Line(String::from_utf8_lossy(&line).into_owned())
            }
            0x7f | 0x08 => {
                let erased = erase_last_char(&mut self.line);
                if visible {
                    echo.push_str(if erased { "\x08 \x08" } else { "\x07" });
                }
                Edit::Pending
            }
            0x15 => {
                while erase_last_char(&mut self.line) {
                    if visible {
                        echo.push_str("\x08 \x08");
                    }
                }
                Edit::Pending
            }
            0x03 => {
                self.line.clear();
                echo.push_str("^C\r\n");
                Edit::Interrupt
            }
            0x04 if self.line.is_empty() => Edit::EndOfInput,
            0x1b => {
                self.escape = Escape::Started;
                Edit::Pending
            }
            byte if byte >= 0x20 => {
                self.line.push(byte);
                if visible {
                    if byte < 0x80 {
                        echo.push(byte as char);
                    } else if let Some(start) = self.line.iter().rposition(|b| *b & 0xc0 != 0x80) {
                        // Echo a multi-byte character once it is complete.
                        if let Ok(complete) = std::str::from_utf8(&self.line[start..]) {
                            echo.push_str(complete);
                        }
                    }
                }
                Edit::Pending
            }
            _ => Edit::Pending,
        }
    }
}

/// Removes the last UTF-8 character of `line`; false when it was empty.
fn erase_last_char(line: &mut Vec<u8>) -> bool {
    if line.is_empty() {
        return false;
    }
    while let Some(byte) = line.pop() {
        if byte & 0xc0 != 0x80 {
            break;
        }
    }
    true
}

/// `\n` → `\r\n`, what a terminal's output processing (ONLCR) does.
pub(crate) fn to_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut previous = '\0';
    for c in text.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input`; returns the echo and every non-pending edit.
    fn type_in(editor: &mut LineEditor, input: &[u8], visible: bool) -> (String, Vec<Edit>) {
        let mut echo = String::new();
        let edits = input.iter().map(|byte| editor.feed(*byte, visible, &mut echo)).filter(|edit| *edit != Edit::Pending).collect();
        (echo, edits)
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let mut editor = LineEditor::new();
        let (echo, edits) = type_in(&mut editor, b"ab\r\ncd\ref\n", true);
        assert_eq!(edits, vec![Edit::Line("ab".into()), Edit::Line("cd".into()), Edit::Line("ef".into())]);
        assert_eq!(echo, "ab\r\ncd\r\nef\r\n");
    }

    #[test]
    fn editing_keys_erase_and_escape_sequences_are_swallowed() {
        let mut editor = LineEditor::new();
        let (echo, edits) = type_in(&mut editor, b"lx\x7fs\x1b[A\x1bOB -l\r", true);
        assert_eq!(edits, vec![Edit::Line("ls -l".into())]);
        assert_eq!(echo, "lx\x08 \x08s -l\r\n");
        let (echo, edits) = type_in(&mut editor, b"\x7fabc\x15\x03\x04", true);
        assert_eq!(edits, vec![Edit::Interrupt, Edit::EndOfInput]);
        assert_eq!(echo, "\x07abc\x08 \x08\x08 \x08\x08 \x08^C\r\n");
    }

    #[test]
    fn hidden_input_echoes_only_the_line_end() {
        let mut editor = LineEditor::new();
        let (echo, edits) = type_in(&mut editor, b"s3cret\x7fT\r", false);
        assert_eq!(edits, vec![Edit::Line("s3creT".into())]);
        assert_eq!(echo, "\r\n");
    }

    #[test]
    fn erasing_removes_whole_utf8_characters() {
        let mut line = "aé".as_bytes().to_vec();
        assert!(erase_last_char(&mut line));
        assert_eq!(line, b"a");
        assert!(erase_last_char(&mut line));
        assert!(!erase_last_char(&mut line));
        let mut editor = LineEditor::new();
        let (echo, _) = type_in(&mut editor, "é".as_bytes(), true);
        assert_eq!(echo, "é");
    }

    #[test]
    fn terminal_output_gets_carriage_returns_once() {
        assert_eq!(to_terminal("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}
