//! A byte sink that keeps the last `cap` bytes of a stream and drains the rest.
//!
//! A child that writes more than we keep must never block on a full pipe, so the whole stream
//! is always read; only the tail is kept, because both a failure's message and a handler's
//! JSON result come last.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The last `cap` bytes read from one stream.
#[derive(Debug)]
pub struct Capture {
    cap: usize,
    buf: Vec<u8>,
    truncated: bool,
}

impl Capture {
    /// An empty capture that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Capture {
            cap,
            buf: Vec::new(),
            truncated: false,
        }
    }

    /// Reads `reader` to its end (or until the future is dropped), keeping the tail.
    ///
    /// # Cancel safety
    /// Everything read before the future is dropped stays in the capture.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, reader: Option<R>) {
        let Some(mut reader) = reader else {
            return;
        };
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.push(&chunk[..n]),
            }
        }
    }

    /// Appends `bytes`, dropping the head once the buffer is well past the cap.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim only once the buffer is twice the cap, so trimming costs O(1) per byte.
        if self.buf.len() > self.cap.saturating_mul(2).max(8192) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let excess = self.buf.len().saturating_sub(self.cap);
        if excess > 0 {
            self.buf.drain(..excess);
            self.truncated = true;
        }
    }

    /// The kept text (invalid UTF-8 replaced) and whether anything was dropped.
    pub fn finish(mut self) -> (String, bool) {
        let text = self.text();
        (text, self.truncated)
    }

    /// The kept text so far (invalid UTF-8 replaced); the capture keeps filling afterwards.
    pub(crate) fn text(&mut self) -> String {
        self.trim();
        let mut start = 0;
        // A cut may land inside a multi-byte character; start at the next whole one.
        if self.truncated {
            while start < self.buf.len() && (self.buf[start] & 0b1100_0000) == 0b1000_0000 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_keeps_the_tail_of_a_long_stream() {
        let mut capture = Capture::new(10);
        let input: Vec<u8> = b"0123456789".repeat(5000);
        capture.fill(Some(&input[..])).await;
        let (text, truncated) = capture.finish();
        assert_eq!(text, "0123456789");
        assert!(truncated);
    }

    #[tokio::test]
    async fn capture_never_starts_inside_a_character() {
        let mut capture = Capture::new(3);
        capture.fill(Some("ééé".as_bytes())).await;
        assert_eq!(capture.finish(), ("é".to_owned(), true));
    }

    #[tokio::test]
    async fn short_stream_is_kept_whole() {
        let mut capture = Capture::new(100);
        capture.fill(Some(&b"hello"[..])).await;
        assert_eq!(capture.finish(), ("hello".to_owned(), false));
    }
}
