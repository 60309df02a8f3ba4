//! What reading a body keeps alive: a body arriving as many small frames, each a slice of a
//! larger buffer (as a connection hands out what it read over TLS), must not keep every buffer
//! it came in alive until the end; the reader copies a frame and lets its buffer go.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;

/// Frames of `FRAME` bytes, each cut from its own `BUFFER`-byte buffer, made as they are read.
const FRAMES: usize = 2_000;
const FRAME: usize = 512;
const BUFFER: usize = 64 * 1024;

/// A read buffer that counts itself while alive.
struct Buffer {
    bytes: Vec<u8>,
    alive: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_in_small_slices_of_large_buffers_does_not_keep_the_buffers() {
    let alive = Arc::new(AtomicUsize::new(0));
    let most_alive = Arc::new(AtomicUsize::new(0));
    let (a, m) = (Arc::clone(&alive), Arc::clone(&most_alive));
    let frames = futures::stream::iter((0..FRAMES).map(move |i| {
        let now = a.fetch_add(1, Ordering::Relaxed) + 1;
        m.fetch_max(now, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)]
        let buffer = Buffer { bytes: vec![b'a' + (i % 26) as u8; BUFFER], alive: Arc::clone(&a) };
        Ok::<_, std::io::Error>(Bytes::from_owner(buffer).slice(..FRAME))
    }));

    let read =
        stowage_edge::read(Body::from_stream(frames), FRAMES * FRAME, Duration::from_secs(30)).await.expect("read");

    assert_eq!(read.len(), FRAMES * FRAME);
    #[allow(clippy::cast_possible_truncation)]
    let in_order = read.chunks(FRAME).enumerate().all(|(i, c)| c.iter().all(|b| *b == b'a' + (i % 26) as u8));
    assert!(in_order, "the frames were not read in order");
    // Each buffer goes as soon as its frame is copied. Keeping every frame until the end would
    // keep FRAMES buffers (131 MB here) for a 1 MB body.
    let most = most_alive.load(Ordering::Relaxed);
    assert!(most <= 2, "{most} read buffers of {BUFFER} bytes were alive at once for a {} byte body", FRAMES * FRAME);
    assert_eq!(alive.load(Ordering::Relaxed), 0, "buffers outlived the read");
}
