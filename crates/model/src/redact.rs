//! Secret values never reach a transcript, even when a device prints them.
//!
//! proofrig records a secret it *sends* as a `Redacted` event, never as bytes. But a
//! device may echo a password typed where it echoes input, print it from a config
//! file, or log it after someone typed it into the user name field; then the value
//! arrives as ordinary output. A [`Redactor`] knows the secret values of a run (or a
//! technician session) and replaces every occurrence in recorded bytes and text with
//! a marker `«redacted:<label>»` that names the secret's reference, never its value.
//!
//! Only values of at least [`MIN_SECRET_LEN`] bytes are redacted: a one- to
//! three-byte value (a PIN, `abc`) turns up by chance all over ordinary output, so
//! redacting it would deface every transcript and change the text verdicts are
//! decided from, while protecting a value that is guessable anyway.
//!
//! Occurrences that overlap (the value `abab` in `ababab`, or two secrets sharing
//! bytes) are cut out as one run, so no byte of any occurrence survives. A run shows
//! one marker, that of the secret starting it (the longest, where several start at
//! the same byte). Occurrences that only touch keep a marker each.
//!
//! Device output arrives in chunks, and a secret may be split between two of them.
//! A [`RedactingStream`] redacts one byte stream (one channel, one direction) as it
//! arrives: it releases everything that can no longer be part of a secret and holds
//! back only the tail that could still be the start of one (at most the longest
//! value minus one byte) until later bytes decide it, or until the stream ends. It
//! also remembers as much of what it released, so that a marker can absorb an
//! occurrence overlapping it. Memory per stream is therefore bounded by the longest
//! value. Fed the same bytes in any chunking, a stream releases exactly what
//! [`Redactor::redact`] makes of all of them at once, which is what lets a step
//! output redacted in one piece agree with the transcript redacted chunk by chunk.

use std::borrow::Cow;
use std::fmt;

use crate::rig::Rig;
use crate::secret::{Secret, SecretError, SecretRef};

/// Shortest secret value that is redacted, in bytes (see the module documentation).
pub const MIN_SECRET_LEN: usize = 4;

/// The text that stands in for a secret's value: it names the reference only.
pub fn marker(label: &str) -> String {
    format!("«redacted:{label}»")
}

#[derive(Clone)]
struct KnownSecret {
    value: Vec<u8>,
    marker: Vec<u8>,
}

/// The secret values to keep out of the evidence, and the cutting itself.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest value first, so the first match at a position is the longest.
    secrets: Vec<KnownSecret>,
    labels: Vec<String>,
    /// Bit `b` is set when some value begins with byte `b`, and bit `256 * a + b`
    /// of `first_pairs` when some value begins with bytes `a b` (every value has at
    /// least two): no occurrence can start at a position where neither matches, so
    /// most positions of a text need no comparison at all.
    first_bytes: [u64; 4],
    first_pairs: Vec<u64>,
}

impl Redactor {
    /// A redactor that knows no secret (and so changes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Learn a secret's value. False when it is too short to redact or already known.
    pub fn add(&mut self, secret: &Secret) -> bool {
        let value = secret.expose().as_bytes();
        if value.len() < MIN_SECRET_LEN || self.secrets.iter().any(|known| known.value == value) {
            return false;
        }
        let at = self.secrets.partition_point(|known| known.value.len() >= value.len());
        self.secrets.insert(at, KnownSecret { value: value.to_vec(), marker: marker(secret.label()).into_bytes() });
        self.first_bytes[usize::from(value[0] >> 6)] |= 1 << (value[0] & 63);
        let pair = usize::from(value[0]) << 8 | usize::from(value[1]);
        self.first_pairs.resize(1024, 0);
        self.first_pairs[pair >> 6] |= 1 << (pair & 63);
        self.labels.push(secret.label().to_string());
        true
    }

    /// Read a referenced secret now and learn its value.
    pub fn add_reference(&mut self, reference: &SecretRef) -> Result<bool, SecretError> {
        Ok(self.add(&reference.resolve()?))
    }

    /// Learn every secret the rig references: device `secrets:`, console login
    /// passwords, SSH passwords and key passphrases. A secret that cannot be read now
    /// is skipped (whatever needs it reports that when it runs) and its error returned.
    pub fn add_rig(&mut self, rig: &Rig) -> Vec<SecretError> {
        let mut references: Vec<SecretRef> = Vec::new();
        for (_, device) in rig.devices() {
            let login = device.console.as_ref().and_then(|console| console.login.as_ref());
            let ssh = device.ssh.as_ref();
            let candidates = device
                .secrets
                .values()
                .chain(login.and_then(|l| l.password.as_ref()))
                .chain(ssh.and_then(|s| s.password.as_ref()))
                .chain(ssh.and_then(|s| s.key_passphrase.as_ref()));
            for reference in candidates {
                if !references.contains(reference) {
                    references.push(reference.clone());
                }
            }
        }
        references.iter().filter_map(|reference| self.add_reference(reference).err()).collect()
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Labels of the secrets this redactor knows, in the order they were learnt.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(String::as_str)
    }

    /// Length of the longest value in bytes; a stream holds back at most one byte less.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, |known| known.value.len())
    }

    /// `data` with every occurrence of a secret replaced by its marker.
    pub fn redact<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        // Every occurrence begins with a pair of bytes some value begins with.
        if self.is_empty() || !data.windows(2).any(|pair| self.may_begin(pair)) {
            return Cow::Borrowed(data);
        }
        let mut stream = RedactingStream { held: data.to_vec(), ..RedactingStream::default() };
        let redacted = stream.release(self, Release::Everything);
        if redacted == data {
            Cow::Borrowed(data)
        } else {
            Cow::Owned(redacted)
        }
    }

    /// `text` with every occurrence of a secret replaced by its marker.
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Values are whole UTF-8 strings and markers are UTF-8, so cutting one out of
            // UTF-8 text leaves UTF-8; the lossy path is never taken.
            Cow::Owned(bytes) => {
                Cow::Owned(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
            }
        }
    }

    /// Redact every string inside a JSON value (object keys are left as they are:
    /// they come from plans and proofrig, not from devices).
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(text) => {
                let redacted = match self.redact_text(text) {
                    Cow::Owned(redacted) => Some(redacted),
                    Cow::Borrowed(_) => None,
                };
                if let Some(redacted) = redacted {
                    *text = redacted;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.redact_json(item)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|item| self.redact_json(item)),
            _ => {}
        }
    }

    /// Whether some value begins with `byte`.
    fn may_start(&self, byte: u8) -> bool {
        self.first_bytes[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }

    /// Whether some value may begin with `bytes` (decided by its first two bytes;
    /// every value begins with an empty slice).
    fn may_begin(&self, bytes: &[u8]) -> bool {
        match bytes {
            [] => true,
            [byte] => self.may_start(*byte),
            [a, b, ..] => {
                let pair = usize::from(*a) << 8 | usize::from(*b);
                self.first_pairs.get(pair >> 6).is_some_and(|bits| bits & (1 << (pair & 63)) != 0)
            }
        }
    }

    /// Index of the longest secret whose value starts at `at`.
    fn match_at(&self, window: &[u8], at: usize) -> Option<usize> {
        let rest = &window[at..];
        if rest.len() < MIN_SECRET_LEN || !self.may_begin(rest) {
            return None;
        }
        self.secrets.iter().position(|known| rest.starts_with(&known.value))
    }

    /// Whether `tail` is the beginning of some secret, but not all of it.
    fn could_begin_secret(&self, tail: &[u8]) -> bool {
        self.may_begin(tail) && self.secrets.iter().any(|known| known.value.len() > tail.len() && known.value.starts_with(tail))
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.labels).finish()
    }
}

/// One byte stream (a channel in one direction) redacted as it arrives.
#[derive(Clone, Default)]
pub struct RedactingStream {
    /// The last bytes already released (at most the longest value minus one), kept
    /// because an occurrence that began in them may continue in the next bytes.
    context: Vec<u8>,
    /// How many trailing bytes of `context` a marker already released stands for.
    covered: usize,
    /// Bytes received and not released yet: the start of a possible secret.
    held: Vec<u8>,
}

/// How much of what a stream holds to release.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Only what later bytes cannot turn into (part of) a secret.
    Decided,
    /// Everything: the stream ends or its bytes must be recorded now.
    Everything,
}

/// Overlapping occurrences being cut out as one piece, in window positions.
struct Run {
    start: usize,
    end: usize,
    /// The secret whose marker stands for the run; none for a run that continues a
    /// marker released earlier.
    marker: Option<usize>,
}

impl RedactingStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take the next bytes of the stream; returns the redacted bytes now safe to record.
    pub fn push(&mut self, redactor: &Redactor, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        self.release(redactor, Release::Decided)
    }

    /// Release everything held now although the stream goes on. Should a secret begin
    /// in the released tail, its remainder is still redacted when it arrives, but the
    /// part released here is not: this gives away the first bytes of a secret split by
    /// the call. Only for a point after which the stream's bytes no longer matter (the
    /// end of a run) or must be recorded whatever they are; at a mere pause in a stream
    /// (the end of a step) use [`RedactingStream::release_decided`].
    pub fn flush(&mut self, redactor: &Redactor) -> Vec<u8> {
        // The executor flushes every stream of the run at the end of each step, and most
        // hold nothing then. With nothing held and no more context than this redactor
        // keeps, releasing would only rescan the context and leave everything as it is
        // (tested), at the cost of a few allocations per stream and step.
        if self.held.is_empty() && self.context.len() < redactor.longest() {
            return Vec::new();
        }
        self.release(redactor, Release::Everything)
    }

    /// Release what no later byte can turn into part of a secret, and keep holding
    /// what could still begin one, as [`RedactingStream::push`] does. Safe at any
    /// point of a stream: a secret split there is redacted whole once its rest arrives.
    pub fn release_decided(&mut self, redactor: &Redactor) -> Vec<u8> {
        // `push` already released everything decided; nothing held means nothing to do.
        if self.held.is_empty() {
            return Vec::new();
        }
        self.release(redactor, Release::Decided)
    }

    /// The stream ended: release everything it holds.
    pub fn finish(mut self, redactor: &Redactor) -> Vec<u8> {
        self.release(redactor, Release::Everything)
    }

    /// How many bytes are held back waiting for the next ones.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn release(&mut self, redactor: &Redactor, how: Release) -> Vec<u8> {
        if redactor.is_empty() {
            self.context.clear();
            self.covered = 0;
            return std::mem::take(&mut self.held);
        }
        let keep = redactor.longest() - 1;
        let context_len = self.context.len();
        let mut window = std::mem::take(&mut self.context);
        window.append(&mut self.held);
        let len = window.len();

        // From the first position whose bytes are all the beginning of some secret, the
        // next bytes decide; that includes one inside the context (an occurrence
        // running on from bytes already released), which holds everything new.
        let undecided = match how {
            Release::Everything => len,
            Release::Decided => {
                (len.saturating_sub(keep)..len).find(|&at| redactor.could_begin_secret(&window[at..])).map_or(len, |at| at.max(context_len))
            }
        };

        let mut out = Vec::with_capacity(len - context_len);
        let mut released_to = context_len;
        let mut run = (self.covered > 0).then(|| Run { start: context_len - self.covered, end: context_len, marker: None });
        for start in context_len.saturating_sub(keep)..undecided {
            let Some(index) = redactor.match_at(&window, start) else { continue };
            let end = start + redactor.secrets[index].value.len();
            if end <= context_len {
                continue;
            }
            match &mut run {
                Some(current) if start < current.end => current.end = current.end.max(end),
                _ => {
                    if let Some(done) = run.take() {
                        release_run(&done, &window, redactor, &mut released_to, &mut out);
                    }
                    run = Some(Run { start, end, marker: Some(index) });
                }
            }
        }
        let mut last_run = None;
        if let Some(done) = run.take() {
            release_run(&done, &window, redactor, &mut released_to, &mut out);
            last_run = Some(done);
        }
        if undecided > released_to {
            out.extend_from_slice(&window[released_to..undecided]);
            released_to = undecided;
        }

        let context_start = released_to.saturating_sub(keep);
        self.covered = match last_run {
            Some(run) if run.end == released_to => released_to - run.start.max(context_start),
            _ => 0,
        };
        self.held = window[released_to..].to_vec();
        window.truncate(released_to);
        self.context = window.split_off(context_start);
        out
    }
}

/// Append what lies between the last release and `run`, then the run's marker.
fn release_run(run: &Run, window: &[u8], redactor: &Redactor, released_to: &mut usize, out: &mut Vec<u8>) {
    if run.start > *released_to {
        out.extend_from_slice(&window[*released_to..run.start]);
    }
    if let Some(index) = run.marker {
        out.extend_from_slice(&redactor.secrets[index].marker);
    }
    *released_to = (*released_to).max(run.end);
}

impl fmt::Debug for RedactingStream {
    // Never the bytes: held bytes may be the start of a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactingStream").field("held", &self.held.len()).field("context", &self.context.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[(&str, &str)]) -> Redactor {
        let mut redactor = Redactor::new();
        for (label, value) in secrets {
            redactor.add(&Secret::new(*label, *value));
        }
        redactor
    }

    fn streamed(redactor: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut stream = RedactingStream::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(stream.push(redactor, chunk));
            assert!(stream.held() < redactor.longest(), "held {} bytes, more than the longest value minus one", stream.held());
        }
        out.extend(stream.finish(redactor));
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn every_occurrence_becomes_the_marker_of_its_label() {
        let r = redactor(&[("env:PW", "hunter2")]);
        assert_eq!(r.redact_text("login hunter2 then hunter2!"), "login «redacted:env:PW» then «redacted:env:PW»!");
        assert!(matches!(r.redact_text("nothing here"), Cow::Borrowed("nothing here")));
    }

    #[test]
    fn values_shorter_than_four_bytes_and_repeats_are_not_learnt() {
        let mut r = Redactor::new();
        assert!(!r.add(&Secret::new("pin", "123")));
        assert!(r.add(&Secret::new("pw", "1234")));
        assert!(!r.add(&Secret::new("same value, other label", "1234")));
        assert_eq!(r.labels().collect::<Vec<_>>(), ["pw"]);
        assert_eq!(r.redact_text("call 123 or 1234"), "call 123 or «redacted:pw»");
    }

    #[test]
    fn a_secret_split_at_any_position_is_caught() {
        let r = redactor(&[("file:pw", "s3cr3t-Value")]);
        let text = b"before s3cr3t-Value after";
        let expected = "before «redacted:file:pw» after".as_bytes().to_vec();
        assert_eq!(r.redact(text).into_owned(), expected);
        for cut in 0..=text.len() {
            assert_eq!(streamed(&r, &[&text[..cut], &text[cut..]]), expected, "split at {cut}");
        }
        let byte_by_byte: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(streamed(&r, &byte_by_byte), expected);
    }

    #[test]
    fn overlapping_occurrences_leave_no_byte_and_adjacent_ones_keep_a_marker_each() {
        let r = redactor(&[("a", "abab")]);
        assert_eq!(r.redact_text("xababab-y"), "x«redacted:a»-y");
        assert_eq!(r.redact_text("ababababab"), "«redacted:a»");
        assert_eq!(r.redact_text("abab abab"), "«redacted:a» «redacted:a»");
        let two = redactor(&[("a", "wxyz"), ("b", "1234")]);
        assert_eq!(two.redact_text("wxyz1234"), "«redacted:a»«redacted:b»");
    }

    #[test]
    fn several_secrets_overlapping_or_nested_are_all_cut_out() {
        let r = redactor(&[("long", "hunter2hunter"), ("short", "hunter"), ("tail", "ter2xyz")]);
        // The longer value wins where both start; `short` inside `long` needs no marker.
        assert_eq!(r.redact_text("[hunter2hunter]"), "[«redacted:long»]");
        assert_eq!(r.redact_text("[hunter]"), "[«redacted:short»]");
        // Two different secrets sharing bytes: one run, named after the first.
        assert_eq!(r.redact_text("[hunter2xyz]"), "[«redacted:short»]");
        let out = r.redact(b"..hunter2hunter2xyz..hunter..ter2xyzhunter").into_owned();
        for known in ["hunter2hunter", "hunter", "ter2xyz"] {
            assert!(!contains(&out, known.as_bytes()), "{known} survived in {}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn non_utf8_bytes_around_a_secret_pass_through_untouched() {
        let r = redactor(&[("pw", "pässwörd")]);
        let prefix = [0xff, 0xfe, 0x00, 0xc3];
        let suffix = [0x80, 0x1b, b'[', b'0', b'm', 0xe2, 0x82];
        let data = [&prefix[..], "pässwörd".as_bytes(), &suffix[..]].concat();
        let expected = [&prefix[..], "«redacted:pw»".as_bytes(), &suffix[..]].concat();
        let out = r.redact(&data).into_owned();
        assert_eq!(out, expected);
        for cut in 0..=data.len() {
            assert_eq!(streamed(&r, &[&data[..cut], &data[cut..]]), expected, "split at {cut}");
        }
        // Redacting lossily decoded text gives the lossy decoding of the redacted bytes,
        // so an output decoded before redaction agrees with a transcript redacted as bytes.
        assert_eq!(r.redact_text(&String::from_utf8_lossy(&data)), String::from_utf8_lossy(&out));
    }

    #[test]
    fn any_chunking_releases_what_redacting_everything_at_once_gives() {
        // A tiny alphabet makes overlaps, shared prefixes and near misses frequent.
        let values = ["abab", "babba", "aabaab", "bbbb"];
        let r = redactor(&[("a", values[0]), ("b", values[1]), ("c", values[2]), ("d", values[3])]);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let len = next(40) as usize;
            let data: Vec<u8> = (0..len).map(|_| if next(2) == 0 { b'a' } else { b'b' }).collect();
            let whole = r.redact(&data).into_owned();
            for value in values {
                assert!(!contains(&whole, value.as_bytes()), "{value} survived in {:?}", String::from_utf8_lossy(&whole));
            }
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let end = (at + 1 + next(6) as usize).min(data.len());
                chunks.push(&data[at..end]);
                at = end;
            }
            assert_eq!(streamed(&r, &chunks), whole, "input {:?} in chunks {chunks:?}", String::from_utf8_lossy(&data));
        }
    }

    #[test]
    fn a_stream_holds_back_only_what_could_begin_a_secret() {
        let r = redactor(&[("pw", "hunter2")]);
        let mut stream = RedactingStream::new();
        assert_eq!(stream.push(&r, b"plain text\r\n"), b"plain text\r\n");
        assert_eq!(stream.held(), 0);
        assert_eq!(stream.push(&r, b"user hun"), b"user ");
        assert_eq!(stream.held(), 3);
        assert_eq!(stream.push(&r, b"gry"), b"hungry");
        assert_eq!(stream.push(&r, b"hunt"), b"");
        assert_eq!(stream.finish(&r), b"hunt");
    }

    #[test]
    fn a_flushed_tail_that_turns_out_to_begin_a_secret_still_hides_the_rest() {
        let r = redactor(&[("pw", "hunter2")]);
        let mut stream = RedactingStream::new();
        assert_eq!(stream.push(&r, b"> hunt"), b"> ");
        assert_eq!(stream.flush(&r), b"hunt");
        assert_eq!(stream.push(&r, b"er2 <"), "«redacted:pw» <".as_bytes());
    }

    #[test]
    fn releasing_the_decided_bytes_at_any_point_gives_away_no_part_of_a_secret() {
        let r = redactor(&[("a", "hunter2-secret"), ("b", "abab"), ("c", "secret-too")]);
        for text in [&b"login: hunter2-secret ok"[..], b"ababab then abab", b"ends in secret-too", b"no secret here", b"hunter2-secre"] {
            let whole = r.redact(text).into_owned();
            for cut in 0..=text.len() {
                let mut stream = RedactingStream::new();
                let mut out = stream.push(&r, &text[..cut]);
                let held = stream.held();
                // What `push` left held is exactly what could still begin a secret.
                assert_eq!(stream.release_decided(&r), b"", "{text:?} cut at {cut}");
                assert_eq!(stream.held(), held);
                out.extend(stream.push(&r, &text[cut..]));
                out.extend(stream.finish(&r));
                assert_eq!(out, whole, "{text:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn flushing_a_stream_that_holds_nothing_changes_nothing() {
        let redactor = redactor(&[("a", "hunter2-secret"), ("b", "abab"), ("c", "secret-too")]);
        let inputs: [&[&[u8]]; 5] = [
            &[b"login: ", b"hunter2-sec"],
            &[b"xx hunter2-secret", b""],
            &[b"ababab", b"ab"],
            &[b"no secret here, just text"],
            &[b"ends in secret-too", b"a"],
        ];
        for chunks in inputs {
            let mut stream = RedactingStream::new();
            for chunk in chunks {
                stream.push(&redactor, chunk);
                // Flushed twice: the second flush finds nothing held.
                for _ in 0..2 {
                    let mut full = stream.clone();
                    let expected = full.release(&redactor, Release::Everything);
                    assert_eq!(stream.flush(&redactor), expected, "{chunks:?}");
                    assert_eq!((&stream.context, stream.covered, &stream.held), (&full.context, full.covered, &full.held), "{chunks:?}");
                }
            }
        }
    }

    #[test]
    fn json_strings_are_redacted_at_any_depth() {
        let r = redactor(&[("pw", "hunter2")]);
        let mut value = serde_json::json!({"stdout": "x hunter2", "nested": [{"tail": "hunter2"}], "exit_status": 0});
        r.redact_json(&mut value);
        assert_eq!(value, serde_json::json!({"stdout": "x «redacted:pw»", "nested": [{"tail": "«redacted:pw»"}], "exit_status": 0}));
    }

    #[test]
    fn the_rig_secrets_are_learnt_and_an_unreadable_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pw"), "root-Secret-1\n").unwrap();
        std::fs::write(dir.path().join("oper.pw"), "oper-Secret-2\n").unwrap();
        let rig = Rig::parse(
            "rig.yaml",
            r#"
rig: bench
devices:
  ru1:
    role: radio-unit
    secrets:
      root_password: { file: root.pw }
    console:
      serial: { port: /dev/null }
      login: { user: root, password: { file: root.pw } }
    ssh:
      host: 127.0.0.1
      user: oper
      password: { file: oper.pw }
      key_file: id
      key_passphrase: { env: PROOFRIG_TEST_REDACT_SURELY_UNSET }
      host_key: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"#,
            dir.path(),
        )
        .unwrap();
        let mut r = Redactor::new();
        let unreadable = r.add_rig(&rig);
        assert_eq!(unreadable.len(), 1);
        assert!(unreadable[0].to_string().contains("PROOFRIG_TEST_REDACT_SURELY_UNSET"));
        assert_eq!(r.labels().count(), 2);
        assert_eq!(r.redact_text("root-Secret-1 oper-Secret-2").matches("«redacted:file:").count(), 2);
    }

    #[test]
    fn debug_output_never_shows_values_or_held_bytes() {
        let r = redactor(&[("env:PW", "hunter2")]);
        let mut stream = RedactingStream::new();
        stream.push(&r, b"hunter");
        let shown = format!("{r:?} {stream:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("env:PW"));
    }
}
