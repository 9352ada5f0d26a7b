//! Guest timers and wake-ups (placeholder replaced below).
pub fn tsc_hz() -> u64 { 0 }
pub fn set_timer(_deadline: u64, _period: u64) -> Option<u64> { None }
pub fn wake(_core: usize, _hwid: u64) -> bool { false }
