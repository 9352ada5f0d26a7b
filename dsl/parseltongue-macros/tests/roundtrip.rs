//! Property tests: values of generated message types cross a real
//! `hallows-ring` channel unchanged, and any bytes a hostile sender writes
//! read back as a value whose accessors stay in bounds.

mod common;

use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

mod backend {
    parseltongue_macros::include_spec!("../../tests/specs/valid/backend.pt");
}
mod compositor {
    parseltongue_macros::include_spec!("../../tests/specs/valid/compositor.pt");
}
mod users_api {
    parseltongue_macros::include_spec!("../../tests/specs/valid/users_api.pt");
}

fn through_channel<T: hallows_ring::Message + Copy>(values: &[T]) -> Vec<T> {
    let bus = common::Bus::new(8);
    let mut tx = bus.sender::<T>("c");
    let mut rx = bus.receiver::<T>("c");
    let mut out = Vec::new();
    // The first operations handshake the epochs.
    let _ = rx.try_recv();
    for v in values {
        loop {
            match tx.try_send(v) {
                Ok(()) => break,
                Err(hallows_ring::RingError::Full) | Err(hallows_ring::RingError::PeerRestarted) => {
                    while let Ok(m) = rx.try_recv() {
                        out.push(m);
                    }
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    while let Ok(m) = rx.try_recv() {
        out.push(m);
    }
    out
}

prop_compose! {
    fn request()(id in any::<u64>(), op in any::<u8>(), urgent in any::<bool>(),
                 key in "[a-z0-9é]{0,8}", value in proptest::collection::vec(any::<u8>(), 0..=64)) -> backend::Request {
        backend::Request::new(
            id,
            backend::Operation(op),
            urgent.into(),
            backend::BoundedString24::from_str(&key).unwrap(),
            backend::BoundedBytes64::from_bytes(&value).unwrap(),
        )
    }
}

prop_compose! {
    fn surface()(id in any::<u32>(), size in any::<[u16; 2]>(), damage in any::<[[u16; 4]; 4]>()) -> compositor::Surface {
        compositor::Surface { id, size, damage }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn backend_requests_round_trip(values in proptest::collection::vec(request(), 1..40)) {
        let got = through_channel(&values);
        prop_assert_eq!(&got, &values);
        for (g, v) in got.iter().zip(&values) {
            prop_assert_eq!(g.as_bytes(), v.as_bytes());
            prop_assert_eq!(g.key.as_str(), v.key.as_str());
            prop_assert_eq!(g.value.as_bytes(), v.value.as_bytes());
            prop_assert_eq!(g.operation.is_known(), v.operation.0 == 1 || v.operation.0 == 2);
        }
    }

    #[test]
    fn nested_arrays_round_trip(values in proptest::collection::vec(surface(), 1..40)) {
        prop_assert_eq!(through_channel(&values), values);
    }

    #[test]
    fn replies_round_trip(ids in proptest::collection::vec((any::<u64>(), any::<u32>(), any::<bool>(), "[a-z]{0,31}"), 1..20)) {
        let values: Vec<users_api::User> = ids.iter().map(|(r, u, f, n)| users_api::User::new(*r, *u, (*f).into(), users_api::BoundedString31::from_str(n).unwrap())).collect();
        prop_assert_eq!(through_channel(&values), values);
    }

    /// Whatever bytes arrive, accessors never read out of bounds.
    #[test]
    fn hostile_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), core::mem::size_of::<backend::Request>())) {
        let r = backend::Request::read_from_bytes(&bytes).unwrap();
        prop_assert!(r.key.len() <= 24);
        prop_assert!(r.value.as_bytes().len() <= 64);
        let _ = r.key.as_str();
        prop_assert_eq!(r.urgent.get(), bytes[9] != 0);
        prop_assert_eq!(r.operation.is_known(), r.operation.name().is_some());
    }
}

#[test]
fn layout_is_what_the_spec_compiler_computed() {
    let spec = parseltongue::check_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/specs/valid/backend.pt"))).unwrap();
    let st = spec.model.struct_named("Request").unwrap();
    assert_eq!(st.size as usize, core::mem::size_of::<backend::Request>());
    assert_eq!(st.hash, backend::Request::LAYOUT_HASH);
    assert_eq!(backend::Request::DEFINITION, spec.model.canonical(spec.model.structs.iter().position(|s| s.name == "Request").unwrap()));
    assert!(bool_cases());
}

fn bool_cases() -> bool {
    backend::Bool8(2).get() && !backend::Bool8::FALSE.get() && backend::Bool8::from(true) == backend::Bool8::TRUE
}

#[test]
fn bounded_values_refuse_what_does_not_fit() {
    assert!(backend::BoundedString24::from_str(&"x".repeat(25)).is_none());
    assert_eq!(backend::BoundedString24::from_str(&"x".repeat(24)).unwrap().len(), 24);
    assert!(backend::BoundedBytes64::from_bytes(&[0; 65]).is_none());
    assert_eq!(format!("{:?}", backend::Operation::Put), "Put");
    assert_eq!(format!("{:?}", backend::Operation(9)), "Operation(9)");
}
