//! Resending is safe: where a chunk of a stream lands, by its byte offset.
//!
//! A lab host streams a running job's journal, and later uploads its bundle's files,
//! as chunks that each say at which byte of the stream they start. A link that drops
//! after the server stored a chunk but before the lab host saw the answer makes the
//! lab host send it again; LAVA stored such resent log batches twice (79f5a641b).
//! Here the receiver holds a prefix of the stream and [`place`] says what a chunk
//! adds to it: nothing (a resend), its tail (a resend that overlaps new bytes), all
//! of it, or nothing because bytes before it are missing (the sender resumes from the
//! receiver's length). The bytes a chunk repeats must equal the bytes already held:
//! for a journal a difference means someone rewrote what the server has witnessed,
//! and the receiver refuses the chunk and flags the job rather than keep either.

/// What a chunk at `offset` of `len` bytes adds to a stream of which `held` bytes
/// are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every byte is already held: store nothing, answer with `held` again.
    Duplicate,
    /// The first `overlap` bytes repeat held ones (compare them), the rest are new:
    /// append `chunk[overlap..]`.
    Append { overlap: usize },
    /// The chunk starts after the end of what is held: refuse it and answer with
    /// `held`, from where the sender resends.
    Gap { held: u64 },
}

/// Where a chunk lands; see [`Placement`]. An empty chunk is always a duplicate.
pub fn place(held: u64, offset: u64, len: usize) -> Placement {
    if offset > held {
        return Placement::Gap { held };
    }
    let end = offset.saturating_add(len as u64);
    if end <= held {
        return Placement::Duplicate;
    }
    Placement::Append { overlap: (held - offset) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resent_chunk_adds_nothing_and_an_overlapping_one_only_its_new_tail() {
        assert_eq!(place(0, 0, 10), Placement::Append { overlap: 0 });
        assert_eq!(place(10, 10, 5), Placement::Append { overlap: 0 });
        assert_eq!(place(10, 0, 10), Placement::Duplicate);
        assert_eq!(place(10, 4, 6), Placement::Duplicate);
        assert_eq!(place(10, 4, 8), Placement::Append { overlap: 6 });
        assert_eq!(place(10, 10, 0), Placement::Duplicate);
    }

    #[test]
    fn a_chunk_past_the_end_is_a_gap_naming_where_to_resume() {
        assert_eq!(place(10, 11, 5), Placement::Gap { held: 10 });
        assert_eq!(place(0, u64::MAX, 1), Placement::Gap { held: 0 });
    }

    #[test]
    fn resent_chunks_and_overlapping_spans_rebuild_the_stream_once() {
        let stream: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let chunks: Vec<(u64, &[u8])> = stream.chunks(97).enumerate().map(|(i, c)| ((i * 97) as u64, c)).collect();
        // Each chunk sent, then a resend of the one before and of a span overlapping both.
        let mut held: Vec<u8> = Vec::new();
        let mut receive = |offset: u64, chunk: &[u8]| match place(held.len() as u64, offset, chunk.len()) {
            Placement::Duplicate => {}
            Placement::Append { overlap } => {
                assert_eq!(&held[offset as usize..], &chunk[..overlap]);
                held.extend_from_slice(&chunk[overlap..]);
            }
            Placement::Gap { held } => panic!("gap at {offset}, held {held}"),
        };
        for (i, &(offset, chunk)) in chunks.iter().enumerate() {
            receive(offset, chunk);
            if i > 0 {
                let (prev_offset, prev) = chunks[i - 1];
                receive(prev_offset, prev);
                let span = &stream[prev_offset as usize + 50..(offset as usize + chunk.len()).min(stream.len())];
                receive(prev_offset + 50, span);
            }
        }
        assert_eq!(held, stream);
    }
}
