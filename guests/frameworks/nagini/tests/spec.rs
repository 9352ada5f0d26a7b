//! spec/dashboard.pt, the Nagini service shape the docs recommend, is a
//! valid Parseltongue spec whose input messages are what
//! `EvdevDecoder::feed` takes.
use parseltongue::model::{Member, Ty};

#[test]
fn the_dashboard_spec_checks_and_matches_the_decoder() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/dashboard.pt");
    let src = std::fs::read_to_string(path).unwrap();
    let spec = parseltongue::check_str(path, &src).unwrap_or_else(|d| panic!("{d:?}"));
    let m = &spec.model;
    assert_eq!(m.frame_handler.as_deref(), Some("render"));
    let sched = m.scheduler.as_ref().unwrap();
    assert_eq!(sched.frame_period, Some(1_000_000_000 / 60));
    let input = m.channels.iter().find(|c| c.name == "input").unwrap();
    assert!(input.input, "an input_channel: scheduled as input");
    let msg = &m.structs[input.message];
    assert_eq!(msg.size, 8);
    let fields: Vec<String> = msg
        .members
        .iter()
        .filter_map(|mem| match mem {
            Member::Field { name, ty, .. } => Some(format!("{name}:{}", match ty {
                Ty::Prim(p) => format!("{p:?}"),
                other => format!("{other:?}"),
            })),
            _ => None,
        })
        .collect();
    assert_eq!(fields, ["kind:U16", "code:U16", "value:I32"]);
    // The triple decodes.
    let mut d = nagini::input::EvdevDecoder::new(1024, 768, 32767);
    assert!(d.feed(1, 15, 1).is_some(), "EV_KEY KEY_TAB press");
}
