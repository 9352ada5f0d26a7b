//! QEMU's QMP over a Unix socket: screenshots of a partition's display and
//! keyboard and pointer input injected into its virtio-input devices; and
//! the instruction trace `hallows linux-cost` turns on and off ([`Qmp::hmp`]).
//!
//! The socket exists only when a partition has a `display` (or while
//! `hallows linux-cost` measures); QEMU creates it (`-qmp
//! unix:PATH,server=on,wait=off`, see `vmm_config::display_qemu_args`)
//! under the project's `target/hallows/qmp/`: it is never a TCP port and no
//! partition can reach it (QMP is QEMU's, not a device).
//!
//! * [`Qmp::screenshot`]: `screendump` (a PPM file QEMU writes next to the
//!   socket), read back as RGB.
//! * [`Qmp::key`]: a key press and release (`input-send-event`, QEMU
//!   `qcode` names: `"3"`, `"tab"`, `"ret"`, `"right"`).
//! * [`Qmp::click`]: pointer to an absolute position, left button down and
//!   up (the tablet's 0..=0x7fff axes, scaled from display pixels).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// An RGB image (8 bits a channel, rows top to bottom).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Image {
    /// The pixel at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Parses a binary PPM (`P6`, max value 255), what `screendump` writes.
    pub fn from_ppm(data: &[u8]) -> Result<Image> {
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while i < data.len() && data[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < data.len() && data[i] == b'#' {
                while i < data.len() && data[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            let start = i;
            while i < data.len() && !data[i].is_ascii_whitespace() {
                i += 1;
            }
            if start == i {
                bail!("truncated PPM header");
            }
            fields.push(std::str::from_utf8(&data[start..i]).context("PPM header")?.to_owned());
        }
        i += 1; // the single whitespace byte after the max value
        if fields[0] != "P6" || fields[3] != "255" {
            bail!("not a P6 PPM with 8-bit channels ({} {})", fields[0], fields[3]);
        }
        let width: u32 = fields[1].parse().context("PPM width")?;
        let height: u32 = fields[2].parse().context("PPM height")?;
        let len = width as usize * height as usize * 3;
        if data.len() < i + len {
            bail!("PPM holds {} pixel bytes, {width}x{height} needs {len}", data.len().saturating_sub(i));
        }
        Ok(Image { width, height, rgb: data[i..i + len].to_vec() })
    }

    /// Writes the image as a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), self.width, self.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("writing the PNG header")?;
        w.write_image_data(&self.rgb).context("writing the PNG")?;
        Ok(())
    }

    /// Reads an RGB or RGBA PNG file.
    pub fn read_png(path: &Path) -> Result<Image> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut dec = png::Decoder::new(f);
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut r = dec.read_info().with_context(|| format!("reading {}", path.display()))?;
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).with_context(|| format!("decoding {}", path.display()))?;
        let px = info.width as usize * info.height as usize;
        let rgb = match info.color_type {
            png::ColorType::Rgb => buf[..px * 3].to_vec(),
            png::ColorType::Rgba => buf[..px * 4].chunks(4).flat_map(|c| [c[0], c[1], c[2]]).collect(),
            t => bail!("{}: unsupported PNG colour type {t:?}", path.display()),
        };
        Ok(Image { width: info.width, height: info.height, rgb })
    }
}

/// A QMP connection.
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    socket: PathBuf,
    /// Display size in pixels, for scaling pointer positions.
    pub size: (u32, u32),
}

impl Qmp {
    /// Connects to the QMP socket at `path`, waiting up to `timeout` for
    /// QEMU to create it; negotiates capabilities. `size` is the display's
    /// size (the manifest's `display`).
    pub fn connect(path: &Path, size: (u32, u32), timeout: Duration) -> Result<Qmp> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() >= timeout => {
                    return Err(e).with_context(|| format!("connecting to QMP at {} (is `hallows run` running this system?)", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut q = Qmp { stream, reader, socket: path.to_path_buf(), size };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            bail!("{}: not a QMP greeting: {greeting}", path.display());
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).context("reading from QMP")? == 0 {
            bail!("QMP closed the connection (QEMU ended?)");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Runs a command; its `return` value (events are skipped).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.stream, "{msg}").context("writing to QMP")?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {command}: {e}");
            }
        }
    }

    /// Runs a human-monitor (HMP) command, such as `log exec,nochain`;
    /// an error if it printed anything (HMP commands that succeed print
    /// nothing; a refused one prints why).
    pub fn hmp(&mut self, line: &str) -> Result<()> {
        let out = self.execute("human-monitor-command", json!({ "command-line": line }))?;
        match out.as_str() {
            Some("") => Ok(()),
            _ => bail!("QEMU's monitor refused `{line}`: {}", out.as_str().map_or_else(|| out.to_string(), |s| s.trim().to_owned())),
        }
    }

    /// The display as QEMU shows it now.
    pub fn screenshot(&mut self) -> Result<Image> {
        let ppm = self.socket.with_extension(format!("{}.ppm", std::process::id()));
        self.execute("screendump", json!({ "filename": ppm.display().to_string() }))?;
        let data = std::fs::read(&ppm).with_context(|| format!("reading {}", ppm.display()));
        let _ = std::fs::remove_file(&ppm);
        Image::from_ppm(&data?)
    }

    /// Presses and releases the key QEMU calls `qcode`.
    pub fn key(&mut self, qcode: &str) -> Result<()> {
        for down in [true, false] {
            let ev = json!({ "type": "key", "data": { "down": down, "key": { "type": "qcode", "data": qcode } } });
            self.execute("input-send-event", json!({ "events": [ev] }))?;
        }
        Ok(())
    }

    /// Moves the pointer to display pixel (`x`, `y`).
    pub fn move_to(&mut self, x: u32, y: u32) -> Result<()> {
        let (w, h) = self.size;
        let scale = |v: u32, n: u32| (v.min(n.saturating_sub(1)) as u64 * 0x7fff / n.saturating_sub(1).max(1) as u64) as u32;
        let evs = json!([
            { "type": "abs", "data": { "axis": "x", "value": scale(x, w) } },
            { "type": "abs", "data": { "axis": "y", "value": scale(y, h) } },
        ]);
        self.execute("input-send-event", json!({ "events": evs }))?;
        Ok(())
    }

    /// Moves the pointer to (`x`, `y`) and clicks the left button there.
    pub fn click(&mut self, x: u32, y: u32) -> Result<()> {
        self.move_to(x, y)?;
        for down in [true, false] {
            let ev = json!({ "type": "btn", "data": { "down": down, "button": "left" } });
            self.execute("input-send-event", json!({ "events": [ev] }))?;
        }
        Ok(())
    }
}

/// Makes ready for QEMU to create its QMP socket at `sock`: a path QEMU's
/// option syntax can carry, its directory, no stale socket in the way.
pub fn prepare_socket(sock: &Path) -> Result<()> {
    if sock.to_str().is_none_or(|s| s.contains(',')) {
        bail!("the QMP socket path {} must be UTF-8 without commas (QEMU splits options on commas)", sock.display());
    }
    if let Some(dir) = sock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by an earlier run: QEMU would refuse to bind.
    let _ = std::fs::remove_file(sock);
    Ok(())
}

/// The QMP socket `hallows run` gives the system of `manifest`, under the
/// project's `target/hallows/qmp/`.
pub fn socket_for(root: &Path, manifest: &Path) -> PathBuf {
    let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    root.join("target/hallows/qmp").join(format!("{stem}.sock"))
}

/// A free VNC display number (TCP port 5900 + n on 127.0.0.1).
pub fn free_vnc_display() -> Result<u16> {
    for n in 0..100u16 {
        if std::net::TcpListener::bind(("127.0.0.1", 5900 + n)).is_ok() {
            return Ok(n);
        }
    }
    bail!("no free VNC port on 127.0.0.1 between 5900 and 5999")
}

#[cfg(test)]
mod tests {
    use super::Image;

    #[test]
    fn ppm_parses_and_png_round_trips() {
        let mut ppm = b"P6\n# screendump\n2 1\n255\n".to_vec();
        ppm.extend([1, 2, 3, 250, 251, 252]);
        let img = Image::from_ppm(&ppm).unwrap();
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(img.pixel(1, 0), [250, 251, 252]);
        let dir = std::env::temp_dir().join(format!("hallows-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.png");
        img.write_png(&f).unwrap();
        assert_eq!(Image::read_png(&f).unwrap(), img);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Image::from_ppm(b"P6\n2 1\n255\n\x01").is_err(), "short pixel data");
        assert!(Image::from_ppm(b"P5\n2 1\n255\n\x01\x02").is_err(), "greyscale");
        assert!(Image::from_ppm(b"P6\n2").is_err(), "truncated header");
    }
}
