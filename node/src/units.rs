//! Human durations and sizes as flags and route options write them
//! (`30s`, `1h30m`, `256MiB`), each refusal saying what would do.

use std::time::Duration;

/// Parses a human duration such as `30s`, `5m`, `1h30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 30s, 5m or 1h30m"))?;
    if duration.is_zero() {
        return Err(format!("`{text}` is zero; give a positive duration"));
    }
    Ok(duration)
}

/// Parses a human size such as `256MiB`, `1GiB`, `64k` or `1000000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a size ({e}); try 256MiB or 1GiB"))?;
    if size.as_u64() == 0 {
        return Err(format!("`{text}` is zero; give a positive size"));
    }
    Ok(size.as_u64())
}
