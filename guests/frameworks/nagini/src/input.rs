//! Linux evdev events (what virtio-input devices deliver: `type`, `code`,
//! `value`) to Nagini [`InputEvent`]s.
//!
//! [`EvdevDecoder`] tracks modifier keys and the pointer position: absolute
//! axes (QEMU's `virtio-tablet`, range `0..=abs_max`) are scaled to the
//! display, relative ones (`virtio-mouse`) accumulate and clamp. Pointer
//! motion is reported once per `SYN_REPORT`; buttons and keys at once.
//! Every value is untrusted: unknown types and codes are ignored, positions
//! clamp to the display, nothing can overflow.

use crate::app::InputEvent;
use crate::element::{Button, KeyCode, KeyEvent, Modifiers};

/// `EV_SYN`.
pub const EV_SYN: u16 = 0;
/// `EV_KEY`.
pub const EV_KEY: u16 = 1;
/// `EV_REL`.
pub const EV_REL: u16 = 2;
/// `EV_ABS`.
pub const EV_ABS: u16 = 3;
/// `BTN_LEFT`.
pub const BTN_LEFT: u16 = 0x110;
/// `BTN_RIGHT`.
pub const BTN_RIGHT: u16 = 0x111;
/// `BTN_MIDDLE`.
pub const BTN_MIDDLE: u16 = 0x112;

/// Decoder state (see the module docs).
#[derive(Clone, Debug)]
pub struct EvdevDecoder {
    width: i32,
    height: i32,
    abs_max: [i32; 2],
    x: i32,
    y: i32,
    moved: bool,
    shift: [bool; 2],
    ctrl: [bool; 2],
    alt: [bool; 2],
}

impl EvdevDecoder {
    /// A decoder for a `width` x `height` display whose absolute axes run
    /// `0..=abs_max` (32767 for QEMU's virtio-tablet).
    pub fn new(width: u32, height: u32, abs_max: u32) -> EvdevDecoder {
        let m = abs_max.clamp(1, i32::MAX as u32) as i32;
        EvdevDecoder {
            width: width.clamp(1, 1 << 15) as i32,
            height: height.clamp(1, 1 << 15) as i32,
            abs_max: [m, m],
            x: 0,
            y: 0,
            moved: false,
            shift: [false; 2],
            ctrl: [false; 2],
            alt: [false; 2],
        }
    }

    /// Sets the range of absolute axis `axis` (0 = X, 1 = Y) from the
    /// device's `ABS_INFO`.
    pub fn set_abs_max(&mut self, axis: usize, max: u32) {
        if let Some(m) = self.abs_max.get_mut(axis) {
            *m = max.clamp(1, i32::MAX as u32) as i32;
        }
    }

    /// The pointer position.
    pub fn pointer(&self) -> (i32, i32) {
        (self.x, self.y)
    }

    /// Modifiers held.
    pub fn modifiers(&self) -> Modifiers {
        Modifiers {
            shift: self.shift[0] || self.shift[1],
            ctrl: self.ctrl[0] || self.ctrl[1],
            alt: self.alt[0] || self.alt[1],
        }
    }

    /// Feeds one evdev event; returns the Nagini event it completes, if any.
    pub fn feed(&mut self, ty: u16, code: u16, value: i32) -> Option<InputEvent> {
        match ty {
            EV_SYN if code == 0 && self.moved => {
                self.moved = false;
                Some(InputEvent::PointerMove { x: self.x, y: self.y })
            }
            EV_ABS if code <= 1 => {
                let (size, max) = if code == 0 { (self.width, self.abs_max[0]) } else { (self.height, self.abs_max[1]) };
                let v = value.clamp(0, max) as i64;
                let p = (v * (size as i64 - 1) / max as i64) as i32;
                if code == 0 {
                    self.x = p;
                } else {
                    self.y = p;
                }
                self.moved = true;
                None
            }
            EV_REL if code <= 1 => {
                let d = value.clamp(-(1 << 15), 1 << 15);
                if code == 0 {
                    self.x = (self.x + d).clamp(0, self.width - 1);
                } else {
                    self.y = (self.y + d).clamp(0, self.height - 1);
                }
                self.moved = true;
                None
            }
            EV_KEY => self.key(code, value),
            _ => None,
        }
    }

    fn key(&mut self, code: u16, value: i32) -> Option<InputEvent> {
        let down = value != 0;
        let button = match code {
            BTN_LEFT => Some(Button::Left),
            BTN_RIGHT => Some(Button::Right),
            BTN_MIDDLE => Some(Button::Middle),
            _ => None,
        };
        if let Some(button) = button {
            let (x, y) = (self.x, self.y);
            return Some(match value {
                0 => InputEvent::PointerUp { x, y, button },
                1 => InputEvent::PointerDown { x, y, button },
                _ => return None,
            });
        }
        match code {
            42 => self.shift[0] = down,
            54 => self.shift[1] = down,
            29 => self.ctrl[0] = down,
            97 => self.ctrl[1] = down,
            56 => self.alt[0] = down,
            100 => self.alt[1] = down,
            _ => {
                if !down {
                    return None;
                }
                let modifiers = self.modifiers();
                return Some(InputEvent::KeyDown(KeyEvent { key: keycode(code, modifiers.shift), modifiers }));
            }
        }
        None
    }
}

/// The Nagini key for a Linux key code (US layout for characters).
pub fn keycode(code: u16, shift: bool) -> KeyCode {
    const ROW1: &[u8] = b"qwertyuiop";
    const ROW2: &[u8] = b"asdfghjkl";
    const ROW3: &[u8] = b"zxcvbnm";
    const DIGITS: &[u8] = b"1234567890";
    const SHIFTED: &[u8] = b"!@#$%^&*()";
    let letter = |c: u8| KeyCode::Char(if shift { c.to_ascii_uppercase() } else { c } as char);
    match code {
        1 => KeyCode::Escape,
        2..=11 => {
            let i = (code - 2) as usize;
            KeyCode::Char(if shift { SHIFTED[i] } else { DIGITS[i] } as char)
        }
        14 => KeyCode::Backspace,
        15 => KeyCode::Tab,
        16..=25 => letter(ROW1[(code - 16) as usize]),
        28 | 96 => KeyCode::Enter,
        30..=38 => letter(ROW2[(code - 30) as usize]),
        44..=50 => letter(ROW3[(code - 44) as usize]),
        57 => KeyCode::Space,
        59..=68 => KeyCode::F((code - 58) as u8),
        87 => KeyCode::F(11),
        88 => KeyCode::F(12),
        103 => KeyCode::Up,
        105 => KeyCode::Left,
        106 => KeyCode::Right,
        108 => KeyCode::Down,
        other => KeyCode::Other(other),
    }
}
