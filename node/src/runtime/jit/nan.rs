//! Whether a module could ever see a NaN's bits, from its instructions: it
//! decides which engine (with or without NaN canonicalisation) compiles it.

/// Whether a NaN's bits could ever reach the module's output. Wasm leaves a
/// NaN's sign and payload to the CPU, but only a few instructions can tell
/// one NaN from another: a float store or reinterpretation (which expose the
/// bits), `copysign` (which copies a NaN's sign into an ordinary number) and
/// SIMD on floats (whose lanes other SIMD instructions read as integers).
/// Everything else treats every NaN alike: comparisons are unordered,
/// conversions to integers trap or saturate to 0, arithmetic gives a NaN.
/// Without one of those instructions, canonicalising NaNs cannot change a
/// byte of output; it only costs time. A module that does not parse counts
/// as exposing them, so the careful engine compiles (and rejects) it.
pub(super) fn nan_bits_observable(bytes: &[u8]) -> bool {
    let scan = || -> wasmparser::Result<bool> {
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload? {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    let (op, at) = ops.read_with_offset()?;
                    // SIMD instructions, and only they, start with 0xfd.
                    let simd = bytes.get(at) == Some(&SIMD_PREFIX);
                    if exposes_nan_bits(&op, simd) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    };
    scan().unwrap_or(true)
}

/// The first byte of every SIMD instruction.
const SIMD_PREFIX: u8 = 0xfd;

/// One of the instructions of [`nan_bits_observable`]. For a SIMD one
/// (`simd`), wasmparser's variant name, the head of its `Debug` form, tells
/// (`F32x4Mul`), without a list of a hundred opcodes to keep up to date;
/// the formatting is kept off the common, scalar, path.
fn exposes_nan_bits(op: &wasmparser::Operator<'_>, simd: bool) -> bool {
    use wasmparser::Operator as O;
    if matches!(
        op,
        O::F32Store { .. }
            | O::F64Store { .. }
            | O::I32ReinterpretF32
            | O::I64ReinterpretF64
            | O::F32Copysign
            | O::F64Copysign
    ) {
        return true;
    }
    if !simd {
        return false;
    }
    use std::fmt::Write;
    /// Keeps the first bytes written, drops the rest.
    struct Head {
        buf: [u8; 32],
        len: usize,
    }
    impl Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let take = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.len += take;
            // Stop formatting once the variant name is in.
            if take < s.len() {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut head = Head {
        buf: [0; 32],
        len: 0,
    };
    let _ = write!(head, "{op:?}");
    let name = &head.buf[..head.len];
    let name = name
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .map_or(name, |end| &name[..end]);
    name.windows(5).any(|w| w == b"F32x4" || w == b"F64x2")
}
