//! AVCC (length-prefixed) NAL unit iteration, as found in FLV/RTMP video
//! tags and MP4 samples.

use crate::Error;

/// Iterates the NAL units of an AVCC buffer with `length_size`-byte
/// big-endian length prefixes.
///
/// A bad `length_size`, a truncated prefix or a length that runs past the
/// end yields one `Err` and then the iterator ends. Zero-length NAL units
/// are yielded as empty slices (the packetizer skips them).
pub fn avcc_nalus(data: &[u8], length_size: usize) -> AvccIter<'_> {
    AvccIter {
        data,
        length_size,
        failed: false,
    }
}

/// Iterator returned by [`avcc_nalus`]; borrows the input, never allocates.
#[derive(Debug, Clone)]
pub struct AvccIter<'a> {
    data: &'a [u8],
    length_size: usize,
    failed: bool,
}

impl<'a> AvccIter<'a> {
    fn fail(&mut self, e: Error) -> Option<Result<&'a [u8], Error>> {
        self.failed = true;
        self.data = &[];
        Some(Err(e))
    }
}

impl<'a> Iterator for AvccIter<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !(1..=4).contains(&self.length_size) {
            return self.fail(Error::BadLengthSize(self.length_size));
        }
        if self.data.is_empty() {
            return None;
        }
        let Some((prefix, rest)) = self.data.split_at_checked(self.length_size) else {
            let have = self.data.len();
            return self.fail(Error::TooShort {
                needed: self.length_size,
                have,
            });
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((nalu, rest)) = rest.split_at_checked(len) else {
            let have = rest.len();
            return self.fail(Error::TooShort { needed: len, have });
        };
        self.data = rest;
        Some(Ok(nalu))
    }
}

impl std::iter::FusedIterator for AvccIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_four_byte_prefixes() {
        let data = [0, 0, 0, 2, 0x67, 1, 0, 0, 0, 1, 0x68, 0, 0, 0, 0];
        let v: Vec<_> = avcc_nalus(&data, 4).collect::<Result<_, _>>().unwrap();
        assert_eq!(v, vec![&[0x67, 1][..], &[0x68][..], &[][..]]);
    }

    #[test]
    fn other_length_sizes() {
        let data = [2, 0x41, 9, 1, 0x65];
        let v: Vec<_> = avcc_nalus(&data, 1).collect::<Result<_, _>>().unwrap();
        assert_eq!(v, vec![&[0x41, 9][..], &[0x65][..]]);
        let data = [0, 0, 1, 0x09];
        let v: Vec<_> = avcc_nalus(&data, 3).collect::<Result<_, _>>().unwrap();
        assert_eq!(v, vec![&[0x09][..]]);
    }

    #[test]
    fn malformed_ends_with_one_error() {
        let mut it = avcc_nalus(&[0, 0, 0, 9, 1, 2], 4);
        assert_eq!(it.next(), Some(Err(Error::TooShort { needed: 9, have: 2 })));
        assert_eq!(it.next(), None);
        let mut it = avcc_nalus(&[0, 1, 0x41, 0], 2);
        assert_eq!(it.next(), Some(Ok(&[0x41][..])));
        assert!(matches!(it.next(), Some(Err(Error::TooShort { .. }))));
        assert_eq!(it.next(), None);
        let mut it = avcc_nalus(&[1, 2, 3], 0);
        assert_eq!(it.next(), Some(Err(Error::BadLengthSize(0))));
        assert_eq!(it.next(), None);
        assert_eq!(avcc_nalus(&[], 4).next(), None);
    }
}
