//! The host harness: the broker served over std TCP, one thread a
//! connection, against any block device (a `FileDisk` in the binary). The
//! broker sits behind one mutex; a connection waiting on a flush or a long
//! poll drives `poll` itself, so appends that arrive during a flush share the
//! next one (group commit).

use crate::broker::{Broker, Reply};
use crate::dev::BlockDevice;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::vec;

/// Largest request accepted (Kafka's socket.request.max.bytes).
pub const MAX_REQUEST: usize = 100 * 1024 * 1024;

/// The broker shared by connection threads.
pub struct Shared<D: BlockDevice> {
    pub broker: Mutex<Broker<D>>,
    cv: Condvar,
}

impl<D: BlockDevice> core::fmt::Debug for Shared<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Shared")
    }
}

/// Milliseconds since the Unix epoch (Kafka timestamps are wall-clock).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl<D: BlockDevice + Send + 'static> Shared<D> {
    pub fn new(broker: Broker<D>) -> Arc<Self> {
        let s = Arc::new(Shared { broker: Mutex::new(broker), cv: Condvar::new() });
        let t = s.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(5));
            let mut b = t.broker.lock().unwrap_or_else(|e| e.into_inner());
            b.poll(now_ms());
            drop(b);
            t.cv.notify_all();
        });
        s
    }

    /// Serves connections from `listener` until the process ends.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) {
        for conn in listener.incoming().flatten() {
            let s = self.clone();
            std::thread::spawn(move || {
                let _ = s.connection(conn);
            });
        }
    }

    fn connection(&self, mut c: TcpStream) -> std::io::Result<()> {
        c.set_nodelay(true)?;
        let mut len = [0u8; 4];
        let mut frame = vec![0u8; 0];
        loop {
            c.read_exact(&mut len)?;
            let n = i32::from_be_bytes(len);
            if n < 8 || n as usize > MAX_REQUEST {
                return Ok(());
            }
            frame.resize(n as usize, 0);
            c.read_exact(&mut frame)?;
            let started = Instant::now();
            let mut b = self.broker.lock().unwrap_or_else(|e| e.into_inner());
            let reply = b.handle(&frame, now_ms());
            let out = match reply {
                Reply::Now(r) => Some(r),
                Reply::Silent => None,
                Reply::Close => return Ok(()),
                Reply::Wait(t) => loop {
                    b.poll(now_ms());
                    if let Some(r) = b.take(t) {
                        break Some(r);
                    }
                    let now = now_ms();
                    let wait = (b.next_wake(now) - now).clamp(1, 50) as u64;
                    self.cv.notify_all();
                    b = self.cv.wait_timeout(b, Duration::from_millis(wait)).unwrap_or_else(|e| e.into_inner()).0;
                    if started.elapsed() > Duration::from_secs(600) {
                        b.cancel(t);
                        return Ok(());
                    }
                },
            };
            drop(b);
            self.cv.notify_all();
            if let Some(r) = out.filter(|r| !r.is_empty()) {
                c.write_all(&r)?;
            }
        }
    }
}
