//! YAML loading with errors a person can act on: file:line:column, the field path,
//! and a hint.
//!
//! serde-saphyr knows *where* a value failed but not *which field* that was in the
//! document's terms. We walk the parser's events once to build a [`PathIndex`]
//! (dotted field path → source position) and use it both ways: to name the field
//! at a failing position, and to place semantic errors found after parsing (a
//! dangling PDU reference) at the field they concern.

use std::path::Path;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser};

/// A located error in a YAML file (rig, plan, ...).
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct YamlError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field, e.g. `devices.ru1.power.pdu` (`<document>` for the root).
    pub field: String,
    pub message: String,
    #[help]
    pub hint: Option<String>,
    #[source_code]
    source_code: NamedSource<String>,
    #[label("{message}")]
    span: SourceSpan,
}

/// Where a scalar's text starts in its file (see [`YamlSource::scalar_origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextOrigin {
    pub line: usize,
    pub column: usize,
    pub block: bool,
}

impl TextOrigin {
    /// The file position of `line`:`column` (1-based) inside the scalar's text.
    pub fn locate(&self, line: usize, column: usize) -> (usize, usize) {
        let line = line.max(1);
        let column = column.max(1);
        if line == 1 {
            (self.line, self.column + column - 1)
        } else if self.block {
            (self.line + line - 1, self.column + column - 1)
        } else {
            // A multi-line flow scalar: the column within the file is not known.
            (self.line + line - 1, column)
        }
    }
}

/// One position in the document that belongs to a field.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    offset: usize,
    line: usize,
    column: usize,
}

/// Field paths and where they stand in the source.
#[derive(Debug, Default)]
pub struct PathIndex {
    /// In document order; keys and values both appear, keys first.
    entries: Vec<Entry>,
}

enum Frame {
    Map { path: String, pending_key: Option<String>, expecting_key: bool },
    Seq { path: String, next: usize },
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

impl PathIndex {
    /// Index a document. A document that does not parse yields a partial index.
    pub fn build(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let offset = span.start.byte_offset().unwrap_or(span.start.index());
            let (line, column) = (span.start.line(), span.start.col() + 1);
            let mut push = |path: String| entries.push(Entry { path, offset, line, column });
            // Only nodes take a place in a mapping or sequence; comments, anchors and
            // document markers must not shift keys and values.
            let is_node = matches!(event, Event::Scalar(..) | Event::MappingStart(..) | Event::SequenceStart(..) | Event::Alias(..));
            if !is_node {
                if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                    stack.pop();
                }
                continue;
            }
            // The path a new node at this point would have; None for a mapping key.
            let node_path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    Some(p)
                }
                Some(Frame::Map { path, pending_key, expecting_key }) => {
                    if *expecting_key {
                        None
                    } else {
                        *expecting_key = true;
                        Some(join(path, pending_key.as_deref().unwrap_or("?")))
                    }
                }
            };
            match event {
                Event::Scalar(value, ..) => match node_path {
                    Some(p) => push(p),
                    None => {
                        if let Some(Frame::Map { path, pending_key, expecting_key }) = stack.last_mut() {
                            let key_path = join(path, &value);
                            *pending_key = Some(value.into_owned());
                            *expecting_key = false;
                            push(key_path);
                        }
                    }
                },
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = match node_path {
                        Some(p) => p,
                        None => {
                            // A complex key: keep going, name it by position.
                            if let Some(Frame::Map { path, pending_key, expecting_key }) = stack.last_mut() {
                                *pending_key = Some("<complex key>".into());
                                *expecting_key = false;
                                join(path, "<complex key>")
                            } else {
                                String::new()
                            }
                        }
                    };
                    push(path.clone());
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, pending_key: None, expecting_key: true }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::Alias(..) => {
                    if let Some(p) = node_path {
                        push(p);
                    }
                }
                _ => {}
            }
        }
        Self { entries }
    }

    /// The innermost field at or before a byte offset.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        self.entries.iter().take_while(|e| e.offset <= offset).last().map(|e| e.path.as_str())
    }

    /// Where a field's value stands (the key if the field has no value node).
    fn locate(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().rfind(|e| e.path == path)
    }
}

/// A YAML document held with its name, for parsing and for locating errors.
pub struct YamlSource {
    pub name: String,
    pub text: String,
    index: PathIndex,
}

impl YamlSource {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let index = PathIndex::build(&text);
        Self { name: name.into(), text, index }
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(path.display().to_string(), std::fs::read_to_string(path)?))
    }

    /// Deserialize the whole document, locating any error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Box<YamlError>> {
        serde_saphyr::from_str(&self.text).map_err(|err| {
            let message = err_message(&err);
            let (offset, line, column) = match err.location() {
                Some(loc) => {
                    let offset = loc
                        .span()
                        .byte_offset()
                        .map(|o| o as usize)
                        .unwrap_or_else(|| offset_of(&self.text, loc.line() as usize, loc.column() as usize));
                    (offset, loc.line() as usize, loc.column() as usize)
                }
                None => (0, 1, 1),
            };
            let field = self.index.path_at(offset).unwrap_or("").to_string();
            let hint = hint_for(&message);
            Box::new(self.error_at_offset(field, offset, line, column, message, hint))
        })
    }

    /// An error about a field found after parsing (e.g. a dangling reference).
    pub fn error_at(&self, field: &str, message: impl Into<String>, hint: Option<String>) -> Box<YamlError> {
        // Fall back to the nearest enclosing field that exists in the document.
        let mut probe = field.to_string();
        let entry = loop {
            if let Some(e) = self.index.locate(&probe) {
                break Some(e.clone());
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe.truncate(cut),
                None => break None,
            }
        };
        let (offset, line, column) = entry.map(|e| (e.offset, e.line, e.column)).unwrap_or((0, 1, 1));
        Box::new(self.error_at_offset(field.to_string(), offset, line, column, message.into(), hint))
    }

    /// An error at a known file position inside a field (e.g. in an embedded script).
    pub fn error_at_position(
        &self,
        field: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Box<YamlError> {
        let offset = offset_of(&self.text, line, column);
        Box::new(self.error_at_offset(field.to_string(), offset, line, column, message.into(), hint))
    }

    /// Where the text of a scalar field starts, so a position inside that text (a line
    /// of an embedded script) can be turned into a file position: `(line, column)` of
    /// the text's first character, and whether it is a block scalar (`|` or `>`),
    /// whose later lines share the first line's indentation.
    pub fn scalar_origin(&self, field: &str) -> Option<TextOrigin> {
        let entry = self.index.locate(field)?;
        let rest = &self.text[entry.offset.min(self.text.len())..];
        if rest.starts_with('|') || rest.starts_with('>') {
            // Content starts on the first non-blank line after the indicator.
            for (line, text_line) in (entry.line + 1..).zip(rest.split_inclusive('\n').skip(1)) {
                if !text_line.trim().is_empty() {
                    let indent = text_line.len() - text_line.trim_start_matches(' ').len();
                    return Some(TextOrigin { line, column: indent + 1, block: true });
                }
            }
            return Some(TextOrigin { line: entry.line + 1, column: 1, block: true });
        }
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        Some(TextOrigin { line: entry.line, column: entry.column + usize::from(quoted), block: false })
    }

    fn error_at_offset(
        &self,
        field: String,
        offset: usize,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    ) -> YamlError {
        let len = self.text[offset.min(self.text.len())..]
            .find(['\n', ',', '}', ']'])
            .unwrap_or(0)
            .max(1)
            .min(self.text.len().saturating_sub(offset));
        let start = offset.min(self.text.len());
        let mut shown = self.text.clone();
        if message.starts_with(crate::secret::SECRET_ERROR) {
            // The refused value may be a password: the snippet shows where, not what.
            let end = shown[start..].find('\n').map_or(shown.len(), |n| start + n);
            let masked: String = shown[start..end].chars().map(|c| if c.is_whitespace() { c } else { '*' }).collect();
            shown.replace_range(start..end, &masked);
        }
        YamlError {
            file: self.name.clone(),
            line,
            column,
            field: if field.is_empty() { "<document>".into() } else { field },
            message,
            hint,
            source_code: NamedSource::new(self.name.clone(), shown),
            span: SourceSpan::new(start.into(), len),
        }
    }
}

/// serde-saphyr's message without its own location prefix and snippet.
fn err_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    // "line 5 column 11: invalid u16" -> "invalid u16"
    let message = match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest,
        _ => first,
    };
    // Some messages end in " at line 3, column 17"; we report the position ourselves.
    match message.rfind(" at line ") {
        Some(cut) if message[cut..].contains(", column ") => message[..cut].to_string(),
        _ => message.to_string(),
    }
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset + l.char_indices().nth(column.saturating_sub(1)).map(|(o, _)| o).unwrap_or(0);
        }
        offset += l.len();
    }
    text.len()
}

/// For "unknown field `x`, expected one of a, b" style messages: the nearest valid name.
fn hint_for(message: &str) -> Option<String> {
    let (kind, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        ("field", rest)
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        ("kind", rest)
    } else {
        return None;
    };
    let (given, tail) = rest.split_once('`')?;
    let candidates: Vec<&str> = tail
        .split_once("expected ")
        .map(|(_, list)| list.trim_start_matches("one of ").split(", ").map(|c| c.trim_matches('`')).collect())
        .unwrap_or_default();
    Some(match nearest(given, &candidates) {
        Some(best) => format!("did you mean `{best}`?"),
        None if candidates.is_empty() => format!("remove `{given}`: this {kind} takes no such name"),
        None => format!("valid names here: {}", candidates.join(", ")),
    })
}

/// The candidate closest to `given`, if it is close enough to be a typo.
pub fn nearest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(given, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        port: u16,
        #[serde(default)]
        baud: u32,
    }

    #[test]
    fn wrong_type_names_file_line_column_and_field() {
        let src = YamlSource::new("t.yaml", "name: a\nitems:\n  - port: 22\n  - port: lots\n");
        let err = src.parse::<Doc>().unwrap_err();
        assert_eq!((err.line, err.column), (4, 11));
        assert_eq!(err.field, "items[1].port");
        assert!(err.to_string().starts_with("t.yaml:4:11: items[1].port:"), "{err}");
    }

    #[test]
    fn unknown_field_suggests_the_nearest_name() {
        let src = YamlSource::new("t.yaml", "name: a\nitems:\n  - { port: 22, buad: 9600 }\n");
        let err = src.parse::<Doc>().unwrap_err();
        assert_eq!(err.field, "items[0].buad");
        assert_eq!(err.hint.as_deref(), Some("did you mean `baud`?"));
        assert_eq!(err.line, 3);
    }

    #[test]
    fn comments_between_a_key_and_its_value_do_not_shift_paths() {
        let text = "name: a\nitems: # the list\n  # first item\n  - port: 22 # ssh\n    baud: 7\n";
        let src = YamlSource::new("t.yaml", text);
        let err = src.error_at("items[0].baud", "too slow", None);
        assert_eq!((err.line, err.column), (5, 11));
    }

    #[test]
    fn semantic_errors_are_placed_at_the_field() {
        let src = YamlSource::new("t.yaml", "name: a\nitems:\n  - port: 22\n    baud: 7\n");
        let err = src.error_at("items[0].baud", "too slow", None);
        assert_eq!((err.line, err.column), (4, 11));
        let err = src.error_at("items[0].missing", "absent", None);
        assert_eq!(err.line, 3, "falls back to the enclosing item");
    }
}
