//! A `log` backend on the console. The level comes from the `log=` boot
//! argument (error, warn, info, debug, trace; default info).

use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLog;

impl Log for ConsoleLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            crate::println!("{:<5} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {
        crate::console::flush();
    }
}

static LOGGER: ConsoleLog = ConsoleLog;

pub fn init(level: Option<&str>) {
    let level = match level {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    // A second init (never happens: one entry per boot) would be refused;
    // either way logging works.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
