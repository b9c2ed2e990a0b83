//! The stdio transport's framing: a u32 little-endian length, then the frame.

use std::io::{self, Read, Write};

use molt_ipc_ring::frame::Frame;

/// Writes `frame` with its length prefix and flushes.
pub fn write_frame(out: &mut impl Write, frame: &Frame<'_>) -> io::Result<()> {
    let bytes = frame.encode_to_vec();
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)?;
    out.flush()
}

/// Reads one length-prefixed frame's bytes; `UnexpectedEof` at the end of the stream.
pub fn read_frame(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    input.read_exact(&mut prefix)?;
    let mut bytes = vec![0u8; u32::from_le_bytes(prefix) as usize];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}
