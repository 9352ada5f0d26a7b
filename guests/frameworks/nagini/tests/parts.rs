//! The small parts: damage merging, axis scaling, the sample ring and the
//! evdev decoder (untrusted input).
use nagini::damage::{Damage, MAX_DAMAGE_RECTS};
use nagini::input::{EvdevDecoder, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, EV_SYN};
use nagini::widgets::{nice_axis, Ring};
use nagini::{Button, InputEvent, KeyCode, KeyEvent, Modifiers, Rect};
use proptest::prelude::*;

#[test]
fn damage_merges_overlaps_and_clips() {
    let mut d = Damage::new(Rect::new(0, 0, 100, 100));
    d.add(Rect::new(10, 10, 10, 10));
    d.add(Rect::new(50, 50, 10, 10));
    assert_eq!(d.rects().len(), 2);
    d.add(Rect::new(15, 15, 10, 10));
    assert_eq!(d.rects().len(), 2);
    assert!(d.rects().contains(&Rect::new(10, 10, 15, 15)));
    d.add(Rect::new(12, 12, 2, 2)); // inside: nothing new
    assert_eq!(d.rects().len(), 2);
    d.add(Rect::new(90, 90, 50, 50));
    assert!(d.rects().contains(&Rect::new(90, 90, 10, 10)), "clipped to the viewport");
    d.add(Rect::new(-10, -10, 5, 5));
    assert_eq!(d.rects().len(), 3, "off screen adds nothing");
    let mut out = vec![];
    d.drain_into(&mut out);
    assert!(d.is_empty() && out.len() == 3);
}

proptest! {
    #[test]
    fn damage_covers_what_was_added_and_stays_disjoint(rs in prop::collection::vec((0i32..120, 0i32..120, 0i32..40, 0i32..40), 0..40)) {
        let vp = Rect::new(0, 0, 100, 100);
        let mut d = Damage::new(vp);
        for &(x, y, w, h) in &rs {
            d.add(Rect::new(x, y, w, h));
        }
        prop_assert!(d.rects().len() <= MAX_DAMAGE_RECTS);
        for &(x, y, w, h) in &rs {
            let r = Rect::new(x, y, w, h).intersect(&vp);
            for py in r.y..r.bottom() {
                for px in r.x..r.right() {
                    prop_assert!(d.rects().iter().any(|o| o.contains(px, py)), "{},{} lost", px, py);
                }
            }
        }
        for (i, a) in d.rects().iter().enumerate() {
            prop_assert!(vp.contains_rect(a));
            for b in &d.rects()[i + 1..] {
                prop_assert!(!a.intersects(b), "{:?} and {:?} overlap", a, b);
            }
        }
    }

    #[test]
    fn nice_axis_covers_the_range(lo in -1e6f32..1e6, span in 0f32..1e6, ticks in 1u32..10) {
        let a = nice_axis(lo, lo + span, ticks);
        prop_assert!(a.min <= lo && a.max >= lo + span, "{:?}", a);
        prop_assert!(a.step > 0.0);
        let steps = (a.max - a.min) / a.step;
        prop_assert!(steps <= 2.0 * ticks as f32 + 2.0, "{} steps for {} ticks", steps, ticks);
        let m = a.step / 10f32.powf(a.step.log10().floor());
        prop_assert!([1.0f32, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-3), "step {}", a.step);
    }

    #[test]
    fn evdev_decoder_never_panics_and_keeps_the_pointer_on_screen(evs in prop::collection::vec((0u16..8, any::<u16>(), any::<i32>()), 0..200)) {
        let mut d = EvdevDecoder::new(1024, 768, 32767);
        for (ty, code, value) in evs {
            let ev = d.feed(ty, code, value);
            let (x, y) = d.pointer();
            prop_assert!((0..1024).contains(&x) && (0..768).contains(&y));
            if let Some(InputEvent::PointerMove { x, y }) = ev {
                prop_assert!((0..1024).contains(&x) && (0..768).contains(&y));
            }
        }
    }
}

#[test]
fn nice_axis_examples() {
    let a = nice_axis(0.0, 2418.0, 4);
    assert_eq!((a.min, a.max, a.step), (0.0, 3000.0, 1000.0));
    let a = nice_axis(0.0, 137.0, 4);
    assert_eq!((a.min, a.max, a.step), (0.0, 150.0, 50.0));
    let a = nice_axis(5.0, 5.0, 4);
    assert!(a.max > a.min, "a flat series still gets an axis: {a:?}");
    let a = nice_axis(f32::NAN, 1.0, 4);
    assert_eq!((a.min, a.max), (0.0, 1.0));
}

#[test]
fn ring_keeps_the_newest_samples() {
    let mut r = Ring::new(3);
    assert!(r.is_empty() && r.last().is_none());
    for v in 1..=5 {
        r.push(v as f32);
    }
    assert_eq!(r.iter().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
    assert_eq!((r.len(), r.capacity(), r.last()), (3, 3, Some(5.0)));
    assert_eq!(Ring::new(0).capacity(), 1);
}

#[test]
fn evdev_tablet_click_and_keys() {
    let mut d = EvdevDecoder::new(1024, 768, 32767);
    assert_eq!(d.feed(EV_ABS, 0, 16384), None);
    assert_eq!(d.feed(EV_ABS, 1, 32767), None);
    assert_eq!(d.feed(EV_SYN, 0, 0), Some(InputEvent::PointerMove { x: 511, y: 767 }));
    assert_eq!(d.feed(EV_SYN, 0, 0), None, "no motion, no move");
    assert_eq!(d.feed(EV_KEY, BTN_LEFT, 1), Some(InputEvent::PointerDown { x: 511, y: 767, button: Button::Left }));
    assert_eq!(d.feed(EV_KEY, BTN_LEFT, 0), Some(InputEvent::PointerUp { x: 511, y: 767, button: Button::Left }));
    assert_eq!(d.feed(EV_REL, 0, -100_000), None);
    assert_eq!(d.feed(EV_SYN, 0, 0), Some(InputEvent::PointerMove { x: 0, y: 767 }), "relative motion clamps");
    assert_eq!(d.feed(EV_KEY, 42, 1), None, "shift down");
    let shift = Modifiers { shift: true, ..Modifiers::default() };
    assert_eq!(d.feed(EV_KEY, 15, 1), Some(InputEvent::KeyDown(KeyEvent { key: KeyCode::Tab, modifiers: shift })));
    assert_eq!(d.feed(EV_KEY, 30, 1), Some(InputEvent::KeyDown(KeyEvent { key: KeyCode::Char('A'), modifiers: shift })));
    assert_eq!(d.feed(EV_KEY, 42, 0), None);
    assert_eq!(d.feed(EV_KEY, 4, 2), Some(InputEvent::KeyDown(KeyEvent { key: KeyCode::Char('3'), modifiers: Modifiers::default() })), "repeat");
    assert_eq!(d.feed(EV_KEY, 4, 0), None, "releases are not events");
    assert_eq!(d.feed(EV_KEY, 28, 1).map(|e| matches!(e, InputEvent::KeyDown(KeyEvent { key: KeyCode::Enter, .. }))), Some(true));
    assert_eq!(d.feed(EV_KEY, 0x2ff, 1).map(|e| matches!(e, InputEvent::KeyDown(KeyEvent { key: KeyCode::Other(0x2ff), .. }))), Some(true));
}
