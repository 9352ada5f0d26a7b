//! A `log` backend on the console. The level comes from the manifest's
//! `log` key (boot information), else from the `log=` boot argument (off,
//! error, warn, info, debug, trace; default info).

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

pub fn init(manifest: u32, bootarg: Option<&str>) {
    use hallows_abi::log_level as l;
    let level = match manifest {
        l::OFF => Some("off"),
        l::ERROR => Some("error"),
        l::WARN => Some("warn"),
        l::INFO => Some("info"),
        l::DEBUG => Some("debug"),
        l::TRACE => Some("trace"),
        _ => bootarg,
    };
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
