-- Lab host sessions: which key consumed an enrollment token (a resent enrollment
-- with the same key is answered again), and what an uploaded bundle of an attempt
-- showed (its verdict once it verified, or why it was flagged).
-- Numbered 0004: 0003 is the recurring runs' schema.

ALTER TABLE enrollment_tokens ADD COLUMN used_key TEXT;
ALTER TABLE attempts ADD COLUMN verdict TEXT;
ALTER TABLE attempts ADD COLUMN flagged TEXT;
