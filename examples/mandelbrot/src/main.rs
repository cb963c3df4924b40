//! Renders a Mandelbrot picture as horizontal tiles, one per task, and
//! stitches the tiles into one PNG.
//!
//!   mandelbrot tile <task> <tasks> [width height max_iter]
//!       renders band `task` of `tasks` to /output/tile-<task>.ppm (binary P6)
//!   mandelbrot stitch <dir> <tasks> <out.png>
//!       reads <dir>/<i>/files/output/tile-<i>.ppm (the OUT directory of the
//!       tile job) and writes the whole picture to <out.png>
//!
//! Only IEEE f64 adds and multiplies are used, in a fixed order, so every
//! engine and CPU produces the same bytes.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: mandelbrot tile <task> <tasks> [width height max_iter]\n       mandelbrot stitch <dir> <tasks> <out.png>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tile") => tile(&args[1..]),
        Some("stitch") => stitch(&args[1..]),
        _ => Err(Usage("expected `tile` or `stitch`".into()).into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(why)) => {
            eprintln!("mandelbrot: {why}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Failed(why)) => {
            eprintln!("mandelbrot: {why}");
            ExitCode::FAILURE
        }
    }
}

struct Usage(String);

enum Error {
    Usage(String),
    Failed(String),
}

impl From<Usage> for Error {
    fn from(u: Usage) -> Self {
        Error::Usage(u.0)
    }
}

fn num(name: &str, value: Option<&String>, default: Option<u32>) -> Result<u32, Error> {
    match (value, default) {
        (Some(v), _) => v
            .parse()
            .map_err(|_| Error::Usage(format!("{name} must be a non-negative integer, got {v:?}"))),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(Error::Usage(format!("missing {name}"))),
    }
}

/// Rows [first, end) of band `task` of `tasks` over `height` rows.
fn band(task: u32, tasks: u32, height: u32) -> (u32, u32) {
    let first = height / tasks * task + (height % tasks).min(task);
    let rows = height / tasks + u32::from(task < height % tasks);
    (first, first + rows)
}

fn tile(args: &[String]) -> Result<(), Error> {
    let task = num("task", args.first(), None)?;
    let tasks = num("tasks", args.get(1), None)?;
    let width = num("width", args.get(2), Some(1024))?;
    let height = num("height", args.get(3), Some(768))?;
    let max_iter = num("max_iter", args.get(4), Some(500))?;
    if tasks == 0 || task >= tasks || tasks > height {
        return Err(Error::Usage(format!(
            "task {task} is not in 0..{tasks}, or there are more tasks than rows ({height})"
        )));
    }
    if width == 0 || width > 16384 || height > 16384 || max_iter == 0 {
        return Err(Error::Usage(
            "width and height must be in 1..=16384, max_iter > 0".into(),
        ));
    }
    let (first, end) = band(task, tasks, height);
    let path = format!("/output/tile-{task}.ppm");
    let file = std::fs::File::create(&path).map_err(|e| Error::Failed(format!("{path}: {e}")))?;
    let mut out = BufWriter::new(file);
    let write = |out: &mut BufWriter<std::fs::File>, bytes: &[u8]| {
        out.write_all(bytes)
            .map_err(|e| Error::Failed(format!("{path}: {e}")))
    };
    write(
        &mut out,
        format!("P6\n{width} {}\n255\n", end - first).as_bytes(),
    )?;
    // The view: real axis [-2.5, 1.0], imaginary axis centred on 0 with the
    // same scale, so the picture is not stretched.
    let scale = 3.5 / f64::from(width);
    let top = f64::from(height) * scale / 2.0;
    let mut row = Vec::with_capacity(width as usize * 3);
    for y in first..end {
        row.clear();
        let ci = top - f64::from(y) * scale;
        for x in 0..width {
            let cr = -2.5 + f64::from(x) * scale;
            row.extend_from_slice(&colour(escape_time(cr, ci, max_iter), max_iter));
        }
        write(&mut out, &row)?;
    }
    out.flush()
        .map_err(|e| Error::Failed(format!("{path}: {e}")))?;
    println!("tile {task}/{tasks}: rows {first}..{end} of {width}x{height}");
    Ok(())
}

/// Iterations before z escapes |z| > 2, or max_iter if it never does.
fn escape_time(cr: f64, ci: f64, max_iter: u32) -> u32 {
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for i in 0..max_iter {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > 4.0 {
            return i;
        }
        zi = 2.0 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
    }
    max_iter
}

/// A blue-gold palette from integer arithmetic only.
fn colour(iter: u32, max_iter: u32) -> [u8; 3] {
    if iter >= max_iter {
        return [0, 0, 0];
    }
    let t = (iter * 1024 / max_iter).min(1023);
    let wave = |phase: u32| -> u8 {
        let x = (t * 3 + phase) % 1024;
        let tri = if x < 512 { x } else { 1023 - x };
        (tri / 2) as u8
    };
    [wave(0), wave(170), wave(340).saturating_add(40)]
}

/// Reads a binary P6 file: (width, height, pixels).
fn read_ppm(path: &str) -> Result<(u32, u32, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Failed(format!("{path}: {e}")))?;
    let bad = || Error::Failed(format!("{path}: not a binary PPM tile"));
    // Header: "P6\n<w> <h>\n255\n", as `tile` writes it.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
            pos += 1;
        }
        let start = pos;
        while bytes.get(pos).is_some_and(|b| !b.is_ascii_whitespace()) {
            pos += 1;
        }
        if start == pos {
            return Err(bad());
        }
        fields.push(
            std::str::from_utf8(&bytes[start..pos])
                .map_err(|_| bad())?
                .to_string(),
        );
    }
    pos += 1;
    let (w, h): (u32, u32) = match (fields[0].as_str(), fields[1].parse(), fields[2].parse()) {
        ("P6", Ok(w), Ok(h)) if fields[3] == "255" => (w, h),
        _ => return Err(bad()),
    };
    let pixels = bytes.get(pos..).ok_or_else(bad)?.to_vec();
    if pixels.len() != w as usize * h as usize * 3 {
        return Err(bad());
    }
    Ok((w, h, pixels))
}

fn stitch(args: &[String]) -> Result<(), Error> {
    let dir = args
        .first()
        .ok_or_else(|| Error::Usage("missing dir".into()))?;
    let tasks = num("tasks", args.get(1), None)?;
    let out = args
        .get(2)
        .ok_or_else(|| Error::Usage("missing out.png".into()))?;
    if tasks == 0 {
        return Err(Error::Usage("tasks must be at least 1".into()));
    }
    let mut width = None;
    let mut height = 0u32;
    let mut pixels = Vec::new();
    for i in 0..tasks {
        let path = format!("{dir}/{i}/files/output/tile-{i}.ppm");
        let (w, h, tile) = read_ppm(&path)?;
        if *width.get_or_insert(w) != w {
            return Err(Error::Failed(format!(
                "{path}: width {w} differs from tile 0"
            )));
        }
        height += h;
        pixels.extend_from_slice(&tile);
    }
    let width = width.unwrap_or(0);
    let file = std::fs::File::create(out).map_err(|e| Error::Failed(format!("{out}: {e}")))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| Error::Failed(format!("{out}: {e}")))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| Error::Failed(format!("{out}: {e}")))?;
    writer
        .finish()
        .map_err(|e| Error::Failed(format!("{out}: {e}")))?;
    println!("stitched {tasks} tiles into {out} ({width}x{height})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_row_once() {
        for (tasks, height) in [(1, 7), (3, 7), (7, 7), (16, 768)] {
            let mut next = 0;
            for t in 0..tasks {
                let (first, end) = band(t, tasks, height);
                assert_eq!(first, next);
                next = end;
            }
            assert_eq!(next, height);
        }
    }

    #[test]
    fn points_inside_never_escape() {
        assert_eq!(escape_time(0.0, 0.0, 100), 100);
        assert_eq!(escape_time(-1.0, 0.0, 100), 100);
        assert!(escape_time(1.0, 1.0, 100) < 5);
    }
}
