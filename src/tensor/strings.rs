//! `ByteStrings`: the buffer of a BYTES tensor. All elements live in one flat byte vector
//! with one end offset per element, so a tensor of a million short strings costs two
//! allocations, not a million, and stacking or splitting batches copies two slices.
//! Elements are arbitrary bytes; whether they must be UTF-8 is the consumer's rule.

use std::fmt;
use std::ops::Range;

/// A sequence of byte strings stored back to back.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ByteStrings {
    bytes: Vec<u8>,
    /// `ends[i]` is where element `i` ends in `bytes`; element `i` starts at `ends[i - 1]`
    /// (or 0). Non-decreasing, and the last equals `bytes.len()`.
    ends: Vec<usize>,
}

impl ByteStrings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `elements` elements holding `bytes` bytes in all.
    pub fn with_capacity(elements: usize, bytes: usize) -> Self {
        ByteStrings {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(elements),
        }
    }

    /// `count` empty strings (warm-up, calibration and padding fill).
    pub fn empty_strings(count: usize) -> Self {
        ByteStrings {
            bytes: Vec::new(),
            ends: vec![0; count],
        }
    }

    /// Appends one element.
    pub fn push(&mut self, element: &[u8]) {
        self.bytes.extend_from_slice(element);
        self.ends.push(self.bytes.len());
    }

    /// Appends `text[range]` as one element. A short element with enough of `text` after it
    /// is copied as one fixed 16-byte block and cut to its length: an inline move instead
    /// of a call to `memcpy`, which costs more than the copy for the few bytes of an id.
    #[inline]
    pub fn push_within(&mut self, text: &[u8], range: std::ops::Range<usize>) {
        const BLOCK: usize = 16;
        let len = range.len();
        let block = text
            .get(range.start..range.start.saturating_add(BLOCK))
            .and_then(|b| <&[u8; BLOCK]>::try_from(b).ok());
        match block {
            Some(block) if len <= BLOCK => {
                let before = self.bytes.len();
                self.bytes.extend_from_slice(block);
                self.bytes.truncate(before + len);
            }
            _ => self.bytes.extend_from_slice(&text[range]),
        }
        self.ends.push(self.bytes.len());
    }

    /// Appends one element that `write` appends to the buffer's bytes (decoding it in
    /// place, without a copy of its own); when `write` answers false, the bytes it wrote
    /// are dropped and no element is added.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let before = self.bytes.len();
        if write(&mut self.bytes) {
            self.ends.push(self.bytes.len());
        } else {
            self.bytes.truncate(before);
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all elements together (no length prefixes, no terminators).
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes this buffer holds: the strings plus one offset per element.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + self.ends.len() * std::mem::size_of::<usize>()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        Some(&self.bytes[self.start(i)..end])
    }

    /// The elements as text when every one is UTF-8, else the index of the first that is
    /// not. The buffer is checked once, not element by element (for short strings the
    /// per-call cost dominated), and each element is then a slice of it that starts and
    /// ends on character boundaries.
    pub fn texts(&self) -> Result<impl Iterator<Item = &str> + '_, usize> {
        let all = match std::str::from_utf8(&self.bytes) {
            Ok(all) => all,
            Err(e) => return Err(self.ends.partition_point(|&end| end <= e.valid_up_to())),
        };
        // A multi-byte character split between two elements leaves both invalid.
        if let Some(i) = self.ends.iter().position(|&end| !all.is_char_boundary(end)) {
            return Err(i);
        }
        Ok(self.ends.iter().scan(0, move |start, &end| {
            let text = &all[*start..end];
            *start = end;
            Some(text)
        }))
    }

    /// The elements in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            strings: self,
            next: 0,
        }
    }

    /// A copy of elements `range` (panics when out of bounds, like slice indexing).
    pub fn slice(&self, range: Range<usize>) -> ByteStrings {
        let mut out = ByteStrings::new();
        out.extend_from_range(self, range);
        out
    }

    /// Appends elements `range` of `other` (two slice copies, whatever the element count).
    pub fn extend_from_range(&mut self, other: &ByteStrings, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        let from = other.start(range.start);
        let to = other.ends[range.end - 1];
        let shift = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes[from..to]);
        self.ends
            .extend(other.ends[range].iter().map(|&e| e - from + shift));
    }

    /// Appends every element of `other`.
    pub fn extend_from(&mut self, other: &ByteStrings) {
        self.extend_from_range(other, 0..other.len());
    }

    /// Appends `count` empty strings.
    pub fn push_empty(&mut self, count: usize) {
        let end = self.bytes.len();
        self.ends.extend(std::iter::repeat_n(end, count));
    }

    /// The first element longer than `cap` bytes, as (index, length).
    pub fn first_longer_than(&self, cap: usize) -> Option<(usize, usize)> {
        self.iter()
            .enumerate()
            .map(|(i, s)| (i, s.len()))
            .find(|&(_, len)| len > cap)
    }
}

impl fmt::Debug for ByteStrings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|s| String::from_utf8_lossy(s)))
            .finish()
    }
}

/// Iterator over the elements of a [`ByteStrings`].
pub struct Iter<'a> {
    strings: &'a ByteStrings,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.strings.get(self.next)?;
        self.next += 1;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.strings.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a ByteStrings {
    type Item = &'a [u8];
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<S: AsRef<[u8]>> FromIterator<S> for ByteStrings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut out = ByteStrings::with_capacity(iter.size_hint().0, 0);
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_get_iter_and_sizes() {
        let mut s = ByteStrings::new();
        s.push(b"ab");
        s.push(b"");
        s.push(b"cde");
        assert_eq!(s.len(), 3);
        assert_eq!(s.total_bytes(), 5);
        assert_eq!(s.memory_bytes(), 5 + 3 * std::mem::size_of::<usize>());
        assert_eq!(s.get(1), Some(&b""[..]));
        assert_eq!(s.get(2), Some(&b"cde"[..]));
        assert_eq!(s.get(3), None);
        let all: Vec<&[u8]> = s.iter().collect();
        assert_eq!(all, [&b"ab"[..], b"", b"cde"]);
        assert_eq!(format!("{s:?}"), r#"["ab", "", "cde"]"#);
        assert_eq!(s.first_longer_than(2), Some((2, 3)));
        assert_eq!(s.first_longer_than(3), None);
    }

    /// Every range of a text, short or long, near its end or not, lands as `push` puts it.
    #[test]
    fn push_within_copies_exactly_its_range() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let (mut within, mut plain) = (ByteStrings::new(), ByteStrings::new());
        for start in 0..=text.len() {
            for end in start..=text.len() {
                within.push_within(&text, start..end);
                plain.push(&text[start..end]);
            }
        }
        assert_eq!(within, plain);
        assert_eq!(within.len(), 41 * 42 / 2);
    }

    proptest! {
        #[test]
        fn slices_and_concatenations_keep_every_element(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..12),
            cut in 0usize..12,
        ) {
            let all: ByteStrings = items.iter().collect();
            let cut = cut.min(items.len());
            let mut joined = all.slice(0..cut);
            joined.extend_from(&all.slice(cut..items.len()));
            prop_assert_eq!(&joined, &all);
            let back: Vec<Vec<u8>> = joined.iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(back, items);
        }
    }
}
