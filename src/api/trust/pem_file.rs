//! A PEM file read through a window that slides along it: its start up front, the rest while
//! connecting, and never more than a few tens of kilobytes held.
//!
//! Reading a system bundle (~220 KB) into memory of its size costs ~0.1-0.2 ms at every start, most
//! of it the kernel faulting in the fresh pages it is read into; a window of 48 KB reused all along
//! the file touches a quarter of them. The few sections needed in full later are read back from
//! the open file: a file replaced since (by a rename, as package managers do) is still the one
//! read, and whoever can rewrite it in place decides what is trusted anyway.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What a file's first read takes, before any request: ten certificates or so.
const FIRST_READ: usize = 16 * 1024;
/// What each later read takes.
const NEXT_READ: usize = 32 * 1024;

pub struct PemFile {
    /// The part of the file held, which starts `offset` bytes into it.
    text: Vec<u8>,
    offset: usize,
    /// Kept open to read sections back from (`None` for a file read whole).
    file: Option<File>,
    /// Whether `text` reaches the end of the file.
    complete: bool,
}

impl PemFile {
    /// Opens `path` and reads its start: an error if it cannot be opened or read.
    pub fn open(path: &Path) -> std::io::Result<PemFile> {
        let mut file = File::open(path)?;
        // No more room than the file needs: freed memory is wiped (wipe_alloc.rs), and wiping
        // pages never written faults them in (~40 µs for a small file in a 48 KB window).
        let size = file.metadata().map_or(usize::MAX, |m| {
            usize::try_from(m.len()).map_or(usize::MAX, |len| len.saturating_add(1))
        });
        let mut text = Vec::with_capacity(size.min(FIRST_READ + NEXT_READ));
        let read = (&mut file).take(FIRST_READ as u64).read_to_end(&mut text)?;
        Ok(PemFile {
            text,
            offset: 0,
            file: Some(file),
            complete: read < FIRST_READ,
        })
    }

    /// A file already read whole.
    pub fn whole(text: Vec<u8>) -> PemFile {
        PemFile {
            text,
            offset: 0,
            file: None,
            complete: true,
        }
    }

    /// The part of the file held.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Where the part held starts in the file.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether the part held reaches the end of the file.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Lets go of what comes before `keep` (an index into `text`) and reads more after the rest.
    /// Returns how far the window moved: positions into `text` are that much lower now. A failed
    /// read ends the file where it is: the certificates after it are not trusted, which can only
    /// refuse a server, never accept one.
    pub fn read_more(&mut self, keep: usize) -> usize {
        let moved = keep.min(self.text.len());
        self.text.drain(..moved);
        self.offset += moved;
        let Some(file) = &self.file else {
            self.complete = true;
            return moved;
        };
        match file.take(NEXT_READ as u64).read_to_end(&mut self.text) {
            Ok(read) if read == NEXT_READ => {}
            _ => self.complete = true,
        }
        moved
    }

    /// The bytes at `range` of the file: from the part held, else read back from the file.
    pub fn bytes_at(&self, range: Range<usize>) -> Option<Cow<'_, [u8]>> {
        if let Some(held) = range.start.checked_sub(self.offset) {
            if let Some(bytes) = self.text.get(held..held + range.len()) {
                return Some(Cow::Borrowed(bytes));
            }
        }
        let mut bytes = vec![0; range.len()];
        let offset = u64::try_from(range.start).ok()?;
        self.file.as_ref()?.read_exact_at(&mut bytes, offset).ok()?;
        Some(Cow::Owned(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small file (one private CA) takes the room it needs, not a whole window: wiping the
    /// unwritten rest when it is freed would fault it in.
    #[test]
    fn a_small_file_takes_only_its_own_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, [b'x'; 600]).unwrap();
        let file = PemFile::open(&path).unwrap();
        assert_eq!(file.text().len(), 600);
        assert!(file.complete());
        assert!(file.text.capacity() <= 601, "{}", file.text.capacity());
    }

    #[test]
    fn the_window_slides_and_what_it_left_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut file = PemFile::open(&path).unwrap();
        assert_eq!(file.text(), &content[..FIRST_READ]);
        assert!(!file.complete());
        // Keep the last 100 bytes, read on.
        let moved = file.read_more(FIRST_READ - 100);
        assert_eq!(moved, FIRST_READ - 100);
        assert_eq!(file.offset(), FIRST_READ - 100);
        assert_eq!(file.text(), &content[moved..FIRST_READ + NEXT_READ]);
        while !file.complete() {
            let keep = file.text().len();
            file.read_more(keep);
        }
        assert_eq!(file.offset() + file.text().len(), content.len());
        // Bytes held, bytes let go of, bytes past the end.
        let end = content.len();
        assert_eq!(file.bytes_at(end - 10..end).unwrap(), &content[end - 10..]);
        assert!(
            matches!(file.bytes_at(10..20), Some(Cow::Owned(ref b)) if b[..] == content[10..20])
        );
        assert!(file.bytes_at(end - 5..end + 5).is_none());
    }
}
