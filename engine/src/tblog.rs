//! Live training logs: TensorBoard event files in the `logs/` folder of a training stage's
//! output, written while it runs so that `tensorboard --logdir` shows the curves before the
//! stage ends.
//!
//! A sampling stage logs its grid of samples the same way, as an image (the Images tab),
//! so a sweep's grids can be looked through beside its training curves.
//!
//! The format is TFRecord framing (u64 LE length, masked CRC32C of the length, the data,
//! masked CRC32C of the data) around `Event` protobuf messages; only the few fields a
//! scalar, an image and the hparams plugin's session start need are written, by hand (a
//! protobuf crate would pull in a code generator for a handful of message fields).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use difflow_core::job::LOG_DIR;

/// Set to `0` to turn the live logs off (e.g. to measure what they cost).
pub const DISABLE_ENV: &str = "DIFFLOW_TRAIN_LOG";
/// A reader sees new scalars at least this often, or every `FLUSH_RECORDS` steps.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
const FLUSH_RECORDS: usize = 10;
/// The smoothing of the EMA'd loss (TensorBoard's default smoothing is 0.6 per point;
/// a slower average reads better over thousands of steps).
const LOSS_EMA_DECAY: f64 = 0.98;

/// One event file, appended record by record.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
    unflushed: usize,
    last_flush: Instant,
}

impl EventWriter {
    /// Creates `dir` and `events.out.tfevents.<secs>.<host>.<pid>` in it (TensorFlow's
    /// naming: one file per process, so a resumed or continued run adds its own), headed by
    /// the file-version event.
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let path = dir.join(format!("events.out.tfevents.{secs}.{}.{}", hostname(), std::process::id()));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut writer = EventWriter { file: BufWriter::new(file), path, unflushed: 0, last_flush: Instant::now() };
        let mut event = event_head(wall_time(), 0);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.file.write_all(&frame(&event))?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event holding `values` (tag, value) at `step`; flushes every few records
    /// or seconds.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f32)]) -> io::Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_key(&mut v, 2, WIRE_FIXED32);
            v.extend_from_slice(&value.to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = event_head(wall_time(), step as i64);
        put_bytes(&mut event, 5, &summary);
        self.file.write_all(&frame(&event))?;
        self.unflushed += 1;
        if self.unflushed >= FLUSH_RECORDS || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends the encoded PNG `png` as image `tag` at `step` (`Summary.Image`: its height,
    /// width, colour channels and the file's bytes as they are) and flushes.
    pub fn image(&mut self, step: u64, tag: &str, png: &[u8]) -> io::Result<()> {
        let (width, height, channels) = png_header(png)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a PNG file with a header"))?;
        let mut image = Vec::with_capacity(png.len() + 32);
        for (field, n) in [(1, height), (2, width), (3, channels)] {
            put_key(&mut image, field, WIRE_VARINT);
            put_varint(&mut image, u64::from(n));
        }
        put_bytes(&mut image, 4, png);
        let mut value = Vec::new();
        put_bytes(&mut value, 1, tag.as_bytes());
        put_bytes(&mut value, 4, &image);
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &value);
        let mut event = event_head(wall_time(), step as i64);
        put_bytes(&mut event, 5, &summary);
        self.file.write_all(&frame(&event))?;
        self.flush()
    }

    /// Appends the hparams plugin's `session_start_info` with `hparams`, so that
    /// TensorBoard's HParams tab lists this run with its values beside the other runs'.
    pub fn session_start(&mut self, hparams: &[(String, HParam)]) -> io::Result<()> {
        let mut start = Vec::new();
        for (name, value) in hparams {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, name.as_bytes());
            put_bytes(&mut entry, 2, &value.encode());
            put_bytes(&mut start, 1, &entry);
        }
        put_key(&mut start, 5, WIRE_FIXED64);
        start.extend_from_slice(&wall_time().to_le_bytes());
        // HParamsPluginData { version = 0 (the default, so absent), session_start_info = 3 }.
        let mut plugin_data = Vec::new();
        put_bytes(&mut plugin_data, 3, &start);
        let mut plugin = Vec::new();
        put_bytes(&mut plugin, 1, b"hparams");
        put_bytes(&mut plugin, 2, &plugin_data);
        let mut metadata = Vec::new();
        put_bytes(&mut metadata, 1, &plugin);
        let mut value = Vec::new();
        put_bytes(&mut value, 1, b"_hparams_/session_start_info");
        put_bytes(&mut value, 9, &metadata);
        // The plugin's null tensor: float, shape [0].
        put_bytes(&mut value, 8, &[0x08, 0x01, 0x12, 0x02, 0x12, 0x00]);
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &value);
        let mut event = event_head(wall_time(), 0);
        put_bytes(&mut event, 5, &summary);
        self.file.write_all(&frame(&event))?;
        self.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.unflushed = 0;
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// One hyperparameter's value, as the hparams plugin holds it (a `google.protobuf.Value`).
#[derive(Debug, Clone, PartialEq)]
pub enum HParam {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl HParam {
    /// A sweep value as an instance name writes it: a number, `true`/`false`, else text.
    pub fn parse(text: &str) -> HParam {
        match text {
            "true" => HParam::Bool(true),
            "false" => HParam::Bool(false),
            _ => match text.replace('_', "").parse::<f64>() {
                Ok(x) if x.is_finite() => HParam::Number(x),
                _ => HParam::Text(text.trim_matches('"').to_string()),
            },
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            HParam::Number(x) => {
                put_key(&mut out, 2, WIRE_FIXED64);
                out.extend_from_slice(&x.to_le_bytes());
            }
            HParam::Text(s) => put_bytes(&mut out, 3, s.as_bytes()),
            HParam::Bool(b) => {
                put_key(&mut out, 4, WIRE_VARINT);
                put_varint(&mut out, u64::from(*b));
            }
        }
        out
    }
}

/// The sweep coordinates in an instance name: `ddpm[lr=1e-3, ema=0.999]` →
/// [("lr", 0.001), ("ema", 0.999)]; none for a plain name.
pub fn swept_values(instance: &str) -> Vec<(String, HParam)> {
    let Some(inner) = instance.find('[').and_then(|at| instance.strip_suffix(']').map(|n| &n[at + 1..])) else {
        return Vec::new();
    };
    inner
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), HParam::parse(v.trim())))
        .collect()
}

/// A PNG's width, height and colour channels (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA)
/// from its IHDR chunk; None for anything else.
fn png_header(png: &[u8]) -> Option<(u32, u32, u32)> {
    if png.len() < 26 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let number = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    let channels = match png[25] {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        _ => return None,
    };
    Some((number(16), number(20), channels))
}

/// Logs the picture `png` a stage wrote (a sampling stage's grid) as image `tag` at `step`
/// (the training step of the model it shows) into `out_dir`'s `logs/`, headed by the
/// instance's swept values for the HParams tab. Like the training logs it is a view, not a
/// result: a failure is reported and the stage goes on; [`DISABLE_ENV`] turns it off.
pub fn log_picture(out_dir: &Path, instance: &str, tag: &str, step: u64, png: &Path) {
    if std::env::var(DISABLE_ENV).as_deref() == Ok("0") {
        return;
    }
    let written = std::fs::read(png).and_then(|bytes| {
        let mut writer = EventWriter::create(&out_dir.join(LOG_DIR))?;
        let hparams = swept_values(instance);
        if !hparams.is_empty() {
            writer.session_start(&hparams)?;
        }
        writer.image(step, tag, &bytes)
    });
    if let Err(e) = written {
        crate::progress::log(format!("warning: {} is not in the TensorBoard log: {e}", png.display()));
    }
}

/// What a training loop logs each step: loss, learning rate, gradient norm (when known)
/// and an exponential moving average of the loss. Inactive on non-writing ranks and when
/// [`DISABLE_ENV`] is `0`; a log that cannot be written is reported once and then dropped,
/// since the curves are a view of the run, not one of its results.
pub struct TrainLog {
    writer: Option<EventWriter>,
    loss_ema: Option<f64>,
}

impl TrainLog {
    /// The log of the run writing into `out_dir`, its EMA'd loss seeded from the `earlier`
    /// losses of a resumed run.
    pub fn open(out_dir: &Path, writer_rank: bool, earlier: &[f64]) -> TrainLog {
        let mut log = TrainLog { writer: None, loss_ema: None };
        for &loss in earlier {
            log.average(loss);
        }
        if writer_rank && std::env::var(DISABLE_ENV).as_deref() != Ok("0") {
            match EventWriter::create(&out_dir.join(LOG_DIR)) {
                Ok(writer) => log.writer = Some(writer),
                Err(e) => crate::progress::log(format!("warning: no live training log: {e}")),
            }
        }
        log
    }

    pub fn is_active(&self) -> bool {
        self.writer.is_some()
    }

    /// Records the swept values of `instance` (if it is one of a sweep) for the HParams
    /// tab, which then compares the instances of a sweep side by side.
    pub fn session_start(&mut self, instance: &str) {
        let hparams = swept_values(instance);
        let Some(writer) = &mut self.writer else { return };
        if hparams.is_empty() {
            return;
        }
        if let Err(e) = writer.session_start(&hparams) {
            self.fail(e);
        }
    }

    fn average(&mut self, loss: f64) -> f64 {
        let ema = match self.loss_ema {
            None => loss,
            Some(ema) => LOSS_EMA_DECAY * ema + (1.0 - LOSS_EMA_DECAY) * loss,
        };
        self.loss_ema = Some(ema);
        ema
    }

    /// Records the step numbered `step` (1-based: the steps done).
    pub fn record(&mut self, step: usize, loss: f64, lr: f64, grad_norm: Option<f64>) {
        let ema = self.average(loss);
        let Some(writer) = &mut self.writer else { return };
        let mut values = vec![("loss", loss as f32), ("loss_ema", ema as f32), ("lr", lr as f32)];
        if let Some(norm) = grad_norm {
            values.push(("grad_norm", norm as f32));
        }
        if let Err(e) = writer.scalars(step as u64, &values) {
            self.fail(e);
        }
    }

    /// Flushes what is buffered; the stage's outputs are complete after this.
    pub fn finish(&mut self) {
        if let Some(Err(e)) = self.writer.as_mut().map(EventWriter::flush) {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: io::Error) {
        if let Some(writer) = self.writer.take() {
            crate::progress::log(format!("warning: the live training log {} stops: {e}", writer.path().display()));
        }
    }
}

fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The machine's name for the file name (TensorBoard's convention), `localhost` if unknown.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    if ok && !name.is_empty() {
        name
    } else {
        "localhost".into()
    }
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// CRC32C rotated and offset as TFRecord specifies (a CRC of data that holds CRCs).
pub fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_BYTES: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// An `Event`'s `wall_time` (field 1, double) and `step` (field 2, int64).
fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut event = Vec::with_capacity(96);
    put_key(&mut event, 1, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    put_key(&mut event, 2, WIRE_VARINT);
    put_varint(&mut event, step as u64);
    event
}

fn put_key(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push(field << 3 | wire);
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_key(out, field, WIRE_BYTES);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 (iSCSI) B.4 and the CRC catalogue's check value for "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn a_record_frames_its_data_with_masked_crcs() {
        // Expected values from TensorBoard's own `masked_crc32c` (tensorflow_stub).
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc(&[0u8; 8]), 0x0798_0329);
        let mut expected = vec![3, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&0x0e49_99b0u32.to_le_bytes());
        expected.extend_from_slice(b"abc");
        expected.extend_from_slice(&0x21f1_576eu32.to_le_bytes());
        assert_eq!(frame(b"abc"), expected);
    }

    #[test]
    fn a_scalar_event_encodes_as_protobuf() {
        let mut event = event_head(1.5, 300);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, b"loss");
        put_key(&mut v, 2, WIRE_FIXED32);
        v.extend_from_slice(&0.25f32.to_le_bytes());
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &v);
        put_bytes(&mut event, 5, &summary);
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 0xac, 0x02]); // 300 as a varint
        expected.extend_from_slice(&[0x2a, 13, 0x0a, 11, 0x0a, 4, b'l', b'o', b's', b's', 0x15]);
        expected.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(event, expected);
    }

    #[test]
    fn swept_values_come_from_the_instance_name() {
        assert_eq!(
            swept_values("ddpm[lr=1e-3, scale_shift=false, sampler=ddim, steps=2_000]"),
            [
                ("lr".to_string(), HParam::Number(1e-3)),
                ("scale_shift".to_string(), HParam::Bool(false)),
                ("sampler".to_string(), HParam::Text("ddim".into())),
                ("steps".to_string(), HParam::Number(2000.0)),
            ]
        );
        assert!(swept_values("ddpm").is_empty());
        assert_eq!(HParam::Number(0.5).encode()[0], 0x11, "number_value is field 2, a double");
    }

    #[test]
    fn a_png_header_gives_the_images_size_and_channels() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&662u32.to_be_bytes());
        png.extend_from_slice(&520u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        assert_eq!(png_header(&png), Some((662, 520, 3)));
        png[25] = 0;
        assert_eq!(png_header(&png), Some((662, 520, 1)));
        png[25] = 5;
        assert_eq!(png_header(&png), None, "no such colour type");
        assert_eq!(png_header(b"GIF89a and more bytes than a header"), None);
    }

    #[test]
    fn a_reader_sees_the_records_every_few_steps_not_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TrainLog { writer: Some(EventWriter::create(dir.path()).unwrap()), loss_ema: None };
        let path = log.writer.as_ref().unwrap().path().to_path_buf();
        let size = || std::fs::metadata(&path).unwrap().len();
        let header = size();
        assert!(header > 16);
        for step in 1..FLUSH_RECORDS {
            log.record(step, 1.0, 1e-3, Some(2.0));
        }
        assert_eq!(size(), header, "written before a flush was due");
        log.record(FLUSH_RECORDS, 1.0, 1e-3, None);
        assert!(size() > header + FLUSH_RECORDS as u64 * 40, "{} bytes after {FLUSH_RECORDS} records", size());
        log.record(FLUSH_RECORDS + 1, 1.0, 1e-3, None);
        let before = size();
        log.finish();
        assert!(size() > before);
    }

    #[test]
    fn the_loss_average_starts_at_the_first_loss_and_resumes_from_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut fresh = TrainLog::open(dir.path(), false, &[]);
        assert!(!fresh.is_active());
        assert_eq!(fresh.average(4.0), 4.0);
        assert_eq!(fresh.average(2.0), 0.98 * 4.0 + 0.02 * 2.0);
        let mut resumed = TrainLog::open(dir.path(), false, &[4.0]);
        assert_eq!(resumed.average(2.0), 0.98 * 4.0 + 0.02 * 2.0);
        assert!(!dir.path().join(LOG_DIR).exists());
    }
}
