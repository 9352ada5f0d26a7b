//! Generates the Rust for a checked [`Model`]: message types, the endpoint
//! glue trait, typed senders and receivers, the handler trait, the scheduler
//! configuration and the dispatch loop.
//!
//! It owns the shape of the generated code and must keep it `no_std`, free
//! of `unsafe`, allocation and dynamic dispatch, and dependent only on
//! `zerocopy`, `hallows-ring` and `hallows-sched`, all referred to by
//! absolute path. Layout facts computed by [`crate::model`] are emitted as
//! compile-time assertions, so rustc re-checks every size and offset.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{ChannelDirection, Value};
use crate::model::{Member, Model, Prim, SchedClass, Scheduler, TaskClass, Ty};

/// Code generation options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also generate the glue to the guest runtime: `Endpoints` for
    /// `hallows_rt::Boot` (channel lookup by name in the boot information)
    /// and `Port` for its doorbell-carrying endpoints. The guest then needs
    /// `hallows-rt` too.
    pub hallows_rt: bool,
    /// Shown in the header comment.
    pub source_name: Option<String>,
}

fn lit_u64(v: u64) -> Literal {
    Literal::u64_suffixed(v)
}

fn lit_usize(v: u64) -> Literal {
    Literal::usize_unsuffixed(v as usize)
}

pub(crate) fn rust_ident(name: &str) -> proc_macro2::Ident {
    let n = name.replace('-', "_");
    if syn::parse_str::<syn::Ident>(&n).is_ok() {
        format_ident!("{}", n)
    } else if !crate::model::UNUSABLE_IN_RUST.contains(&n.as_str()) {
        format_ident!("r#{}", n)
    } else {
        // The checks refuse these names; never panic on a model built by hand.
        format_ident!("{}_", n)
    }
}

fn prim_tokens(p: Prim) -> TokenStream {
    let i = format_ident!("{}", p.name());
    quote!(#i)
}

fn type_tokens(m: &Model, ty: &Ty) -> TokenStream {
    match ty {
        Ty::Prim(p) => prim_tokens(*p),
        Ty::Bool => quote!(Bool8),
        Ty::Array(e, n) => {
            let e = type_tokens(m, e);
            let n = lit_usize(*n);
            quote!([#e; #n])
        }
        Ty::Bytes(n) => {
            let i = format_ident!("BoundedBytes{}", n);
            quote!(#i)
        }
        Ty::Str(n) => {
            let i = format_ident!("BoundedString{}", n);
            quote!(#i)
        }
        Ty::Enum(e) => {
            let i = format_ident!("{}", m.enums[*e].name);
            quote!(#i)
        }
        Ty::Struct(s) => {
            let i = format_ident!("{}", m.structs[*s].name);
            quote!(#i)
        }
    }
}

/// For each message type an `in_place` channel carries: `FIELD_in(slot)`
/// per field, reading it where the message lies in its ring slot. A
/// `bounded_bytes`/`bounded_string` field gives its bytes as a
/// `hallows_ring::SlotBytes` (its length read once and clamped to the
/// capacity), to be copied straight to their destination; any other field
/// is read as its type (one volatile copy of its bytes).
fn in_place_accessors(m: &Model, msgs: &[usize]) -> TokenStream {
    let mut out = TokenStream::new();
    for &i in msgs {
        let s = &m.structs[i];
        let name = format_ident!("{}", s.name);
        let mut fns = Vec::new();
        for mem in &s.members {
            let Member::Field { name: f, ty, offset, .. } = mem else { continue };
            let fi = format_ident!("{}_in", f);
            let off = lit_usize(*offset);
            match ty {
                Ty::Bytes(cap) | Ty::Str(cap) => {
                    let cap = lit_usize(*cap);
                    let doc = format!(" Field `{f}` where it lies in its slot: the bytes its length says (clamped to {cap}), to copy out with `copy_to`.");
                    fns.push(quote! {
                        #[doc = #doc]
                        #[inline]
                        pub fn #fi<'b>(slot: &::hallows_ring::Slot<'b, Self>) -> ::hallows_ring::SlotBytes<'b, Self> {
                            let len = slot.read::<[u8; 2]>(#off).map_or(0, |l| (u16::from_ne_bytes(l) as usize).min(#cap));
                            slot.bytes(#off + 2, len)
                        }
                    });
                }
                _ => {
                    let t = type_tokens(m, ty);
                    let doc = format!(" Field `{f}` read from its slot (one volatile copy of its bytes).");
                    fns.push(quote! {
                        #[doc = #doc]
                        #[inline]
                        pub fn #fi(slot: &::hallows_ring::Slot<'_, Self>) -> #t {
                            match slot.read::<#t>(#off) {
                                Some(v) => v,
                                None => <#t as ::zerocopy::FromZeros>::new_zeroed(),
                            }
                        }
                    });
                }
            }
        }
        out.extend(quote! {
            /// Fields read where the message lies in a ring slot (an `in_place` channel carries it).
            impl #name {
                #(#fns)*
            }
        });
    }
    out
}

fn collect_bounds(ty: &Ty, bytes: &mut Vec<u64>, strs: &mut Vec<u64>, uses_bool: &mut bool) {
    match ty {
        Ty::Bytes(n) if !bytes.contains(n) => bytes.push(*n),
        Ty::Str(n) if !strs.contains(n) => strs.push(*n),
        Ty::Bool => *uses_bool = true,
        Ty::Array(e, _) => collect_bounds(e, bytes, strs, uses_bool),
        _ => {}
    }
}

const DERIVES: &str = "::zerocopy::FromBytes, ::zerocopy::IntoBytes, ::zerocopy::KnownLayout, ::zerocopy::Immutable";

fn zc() -> TokenStream {
    DERIVES.parse().expect("derive list")
}

fn bounded(n: u64, string: bool) -> TokenStream {
    let name = if string { format_ident!("BoundedString{}", n) } else { format_ident!("BoundedBytes{}", n) };
    let cap = lit_usize(n);
    let zc = zc();
    let what = if string { "bytes of UTF-8 text" } else { "bytes" };
    let doc = format!(" At most {n} {what}, stored in place with a 16-bit length.");
    let text = if string {
        quote! {
            /// `s` if it fits.
            pub fn from_str(s: &str) -> Option<Self> {
                Self::from_bytes(s.as_bytes())
            }
            /// The text, if the (untrusted) bytes are UTF-8.
            pub fn as_str(&self) -> Option<&str> {
                ::core::str::from_utf8(self.as_bytes()).ok()
            }
        }
    } else {
        quote!()
    };
    quote! {
        #[doc = #doc]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, #zc)]
        #[repr(C)]
        pub struct #name {
            len: [u8; 2],
            data: [u8; #cap],
        }
        impl #name {
            /// Capacity in bytes.
            pub const CAPACITY: usize = #cap;
            /// Empty.
            pub const fn empty() -> Self {
                Self { len: [0; 2], data: [0; #cap] }
            }
            /// `bytes` if they fit.
            pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
                if bytes.len() > Self::CAPACITY {
                    return None;
                }
                let mut v = Self::empty();
                v.data[..bytes.len()].copy_from_slice(bytes);
                v.len = (bytes.len() as u16).to_ne_bytes();
                Some(v)
            }
            /// The stored bytes; a length above the capacity (a hostile
            /// sender) is clamped.
            pub fn as_bytes(&self) -> &[u8] {
                let n = (u16::from_ne_bytes(self.len) as usize).min(Self::CAPACITY);
                &self.data[..n]
            }
            /// Length in bytes (clamped to the capacity).
            pub fn len(&self) -> usize {
                self.as_bytes().len()
            }
            /// Whether nothing is stored.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
            #text
        }
        impl Default for #name {
            fn default() -> Self {
                Self::empty()
            }
        }
    }
}

fn message_types(m: &Model) -> TokenStream {
    let zc = zc();
    let mut out = TokenStream::new();
    let (mut bytes, mut strs, mut uses_bool) = (Vec::new(), Vec::new(), false);
    for s in &m.structs {
        for mem in &s.members {
            if let Member::Field { ty, .. } = mem {
                collect_bounds(ty, &mut bytes, &mut strs, &mut uses_bool);
            }
        }
    }
    bytes.sort();
    strs.sort();
    if uses_bool {
        out.extend(quote! {
            /// A boolean in one byte. Any non-zero byte reads as `true`: the
            /// sender is not trusted to write only 0 and 1.
            #[derive(Clone, Copy, PartialEq, Eq, Default, Debug, #zc)]
            #[repr(transparent)]
            pub struct Bool8(pub u8);
            impl Bool8 {
                pub const FALSE: Bool8 = Bool8(0);
                pub const TRUE: Bool8 = Bool8(1);
                pub const fn new(value: bool) -> Self {
                    Bool8(value as u8)
                }
                pub const fn get(self) -> bool {
                    self.0 != 0
                }
            }
            impl From<bool> for Bool8 {
                fn from(value: bool) -> Self {
                    Bool8::new(value)
                }
            }
        });
    }
    for n in bytes {
        out.extend(bounded(n, false));
    }
    for n in strs {
        out.extend(bounded(n, true));
    }
    for e in &m.enums {
        let name = format_ident!("{}", e.name);
        let repr = prim_tokens(e.repr);
        let consts = e.variants.iter().map(|(v, val)| {
            let vi = format_ident!("{}", v);
            let lit: TokenStream = val.to_string().parse().expect("integer");
            quote!(pub const #vi: #name = #name(#lit);)
        });
        let vals = e.variants.iter().map(|(_, val)| -> TokenStream { val.to_string().parse().expect("integer") });
        let vals2 = vals.clone();
        let names = e.variants.iter().map(|(v, _)| v.as_str());
        let doc = format!(" `message_enum {}`: a `{}` on the wire; values other than the declared ones can arrive (check `is_known`).", e.name, e.repr.name());
        out.extend(quote! {
            #[doc = #doc]
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, #zc)]
            #[repr(transparent)]
            pub struct #name(pub #repr);
            #[allow(non_upper_case_globals)]
            impl #name {
                #(#consts)*
                /// Whether the value is one of the declared variants.
                pub const fn is_known(self) -> bool {
                    matches!(self.0, #(#vals)|*)
                }
                /// The variant's name, if the value is declared.
                pub const fn name(self) -> Option<&'static str> {
                    match self.0 {
                        #(#vals2 => Some(#names),)*
                        _ => None,
                    }
                }
            }
            impl ::core::fmt::Debug for #name {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match self.name() {
                        Some(n) => f.write_str(n),
                        None => write!(f, "{}({})", stringify!(#name), self.0),
                    }
                }
            }
        });
    }
    for (i, s) in m.structs.iter().enumerate() {
        let name = format_ident!("{}", s.name);
        let mut fields = Vec::new();
        let mut args = Vec::new();
        let mut inits = Vec::new();
        let mut asserts = Vec::new();
        for mem in &s.members {
            match mem {
                Member::Field { name: f, ty, offset, .. } => {
                    let fi = rust_ident(f);
                    let t = type_tokens(m, ty);
                    fields.push(quote!(pub #fi: #t));
                    args.push(quote!(#fi: #t));
                    inits.push(quote!(#fi));
                    let off = lit_usize(*offset);
                    asserts.push(quote!(const _: () = assert!(::core::mem::offset_of!(#name, #fi) == #off);));
                }
                Member::Reserved { index, size, .. } => {
                    let fi = format_ident!("_reserved_{}", index);
                    let n = lit_usize(*size);
                    fields.push(quote!(#fi: [u8; #n]));
                    inits.push(quote!(#fi: [0; #n]));
                }
            }
        }
        let hash = lit_u64(s.hash);
        let size = lit_usize(s.size);
        let align = lit_usize(s.align);
        let def = m.canonical(i);
        let doc = format!(" `message_struct {}`: {} bytes, align {}, layout hash {:#018x}.", s.name, s.size, s.align, s.hash);
        out.extend(quote! {
            #[doc = #doc]
            #[derive(Clone, Copy, PartialEq, Debug, #zc)]
            #[repr(C)]
            pub struct #name {
                #(#fields,)*
            }
            impl #name {
                /// FNV-1a-64 of [`Self::DEFINITION`]; `hallows check` compares it at both ends of a channel.
                pub const LAYOUT_HASH: u64 = #hash;
                /// The canonical definition, as hashed.
                pub const DEFINITION: &'static str = #def;
                /// A message with every field given and reserved bytes zero.
                #[allow(clippy::too_many_arguments)]
                pub const fn new(#(#args),*) -> Self {
                    Self { #(#inits),* }
                }
            }
            const _: () = assert!(::core::mem::size_of::<#name>() == #size);
            const _: () = assert!(::core::mem::align_of::<#name>() == #align);
            #(#asserts)*
        });
    }
    out
}

/// The `hallows-sched` policy type and the expression of its configuration.
fn scheduler_tokens(s: &Scheduler, cores: u32) -> (TokenStream, TokenStream, TokenStream) {
    let n = lit_usize(s.queue_capacity as u64);
    let cores = lit_usize(cores as u64);
    let dur = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Duration(v) => Some(v as u64),
        _ => None,
    });
    let int = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Int(v) => Some(v as u64),
        _ => None,
    });
    let boolean = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Bool(v) => Some(v),
        _ => None,
    });
    let mut sets = Vec::new();
    let mut set_dur = |name: &str| {
        if let Some(v) = dur(name) {
            let f = format_ident!("{}", name);
            let v = lit_u64(v);
            sets.push(quote!(c.#f = #v;));
        }
    };
    let (policy, config, ctor) = match s.class {
        SchedClass::Api => {
            for p in ["quantum", "demoted_quantum", "max_defer"] {
                set_dur(p);
            }
            for p in ["demote_preempted", "preempt_on_arrival"] {
                if let Some(v) = boolean(p) {
                    let f = format_ident!("{}", p);
                    sets.push(quote!(c.#f = #v;));
                }
            }
            (quote!(::hallows_sched::Api<#n>), quote!(::hallows_sched::ApiConfig), quote!(::hallows_sched::ApiConfig::new(#cores)))
        }
        SchedClass::Ui => {
            set_dur("input_deadline");
            (quote!(::hallows_sched::Ui<#n>), quote!(::hallows_sched::UiConfig), quote!(::hallows_sched::UiConfig::new(#cores)))
        }
        SchedClass::Db => {
            set_dur("slice");
            set_dur("burst");
            if let Some(v) = int("background_share_permille") {
                let v = Literal::u32_suffixed(v as u32);
                sets.push(quote!(c.background_share_permille = #v;));
            }
            (quote!(::hallows_sched::Db<#n>), quote!(::hallows_sched::DbConfig), quote!(::hallows_sched::DbConfig::new(#cores)))
        }
        SchedClass::Messaging => {
            let bound = lit_u64(dur("latency_bound").unwrap_or(0));
            let bc = lit_u64(dur("batch_cost").unwrap_or(0));
            let mc = lit_u64(dur("message_cost").unwrap_or(0));
            set_dur("max_linger");
            if let Some(v) = int("max_batch") {
                let v = lit_usize(v);
                sets.push(quote!(c.max_batch = #v;));
            }
            (quote!(::hallows_sched::Messaging<#n>), quote!(::hallows_sched::MessagingConfig), quote!(::hallows_sched::MessagingConfig::new(#cores, #bound, #bc, #mc)))
        }
    };
    let mutable = if sets.is_empty() { quote!() } else { quote!(mut) };
    let body = quote! {
        let #mutable c = #ctor;
        #(#sets)*
        c
    };
    (policy, config, body)
}

/// Builds the real `hallows-sched` configuration the generated code would
/// build and lets the policy validate it.
pub fn validate_config(s: &Scheduler, cores: u32) -> Result<(), String> {
    let cores = cores as usize;
    let dur = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Duration(v) => Some(v as u64),
        _ => None,
    });
    let int = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Int(v) => Some(v as u64),
        _ => None,
    });
    let boolean = |name: &str| s.set.iter().find(|p| p.0 == name).and_then(|p| match p.1 {
        Value::Bool(v) => Some(v),
        _ => None,
    });
    let r = match s.class {
        SchedClass::Api => {
            let mut c = hallows_sched::ApiConfig::new(cores);
            c.quantum = dur("quantum").unwrap_or(c.quantum);
            c.demoted_quantum = dur("demoted_quantum").unwrap_or(c.demoted_quantum);
            c.max_defer = dur("max_defer").unwrap_or(c.max_defer);
            c.demote_preempted = boolean("demote_preempted").unwrap_or(c.demote_preempted);
            c.preempt_on_arrival = boolean("preempt_on_arrival").unwrap_or(c.preempt_on_arrival);
            hallows_sched::Api::<4>::new(c).map(|_| ())
        }
        SchedClass::Ui => {
            let mut c = hallows_sched::UiConfig::new(cores);
            c.input_deadline = dur("input_deadline").unwrap_or(c.input_deadline);
            hallows_sched::Ui::<4>::new(c).map(|_| ())
        }
        SchedClass::Db => {
            let mut c = hallows_sched::DbConfig::new(cores);
            c.slice = dur("slice").unwrap_or(c.slice);
            c.burst = dur("burst").unwrap_or(c.burst);
            c.background_share_permille = int("background_share_permille").map_or(c.background_share_permille, |v| v as u32);
            hallows_sched::Db::<4>::new(c).map(|_| ())
        }
        SchedClass::Messaging => {
            let Some(bound) = dur("latency_bound") else {
                return Err("`latency_bound` is required by the messaging scheduler".into());
            };
            let mut c = hallows_sched::MessagingConfig::new(cores, bound, dur("batch_cost").unwrap_or(0), dur("message_cost").unwrap_or(0));
            c.max_linger = dur("max_linger").unwrap_or(c.max_linger);
            c.max_batch = int("max_batch").map_or(c.max_batch, |v| v as usize);
            hallows_sched::Messaging::<4>::new(c).map(|_| ())
        }
    };
    r.map_err(|e| e.to_string())
}

fn task_class_tokens(c: TaskClass) -> TokenStream {
    let i = format_ident!("{}", match c {
        TaskClass::Request => "Request",
        TaskClass::Input => "Input",
        TaskClass::Commit => "Commit",
        TaskClass::Read => "Read",
        TaskClass::Background => "Background",
        TaskClass::Message => "Message",
    });
    quote!(::hallows_sched::TaskClass::#i)
}

/// Generates the Rust module body for a checked spec.
pub fn generate(m: &Model, opts: &Options) -> TokenStream {
    let web = m.web.as_ref().map_or_else(TokenStream::new, crate::web::generate);
    let service = generate_service(m, opts);
    quote!(#service #web)
}

fn generate_service(m: &Model, opts: &Options) -> TokenStream {
    let types = message_types(m);
    let batch = lit_usize(m.budget.messages_per_turn as u64);
    let cores = lit_usize(m.budget.cores as u64);
    let service_name = m.name.as_str();

    let rt_glue = if opts.hallows_rt {
        quote! {
            impl<T: ::hallows_ring::Message> Port<::hallows_ring::Sender<T>> for ::hallows_rt::channel::Endpoint<::hallows_ring::Sender<T>> {
                #[inline(always)]
                fn port(&mut self) -> &mut ::hallows_ring::Sender<T> {
                    self
                }
                /// One doorbell per turn on `notify = "doorbell"` channels, for
                /// everything committed since the last (none when nothing was).
                #[inline(always)]
                fn committed(&mut self) {
                    self.flush();
                }
            }
            impl<T: ::hallows_ring::Message> Port<::hallows_ring::Receiver<T>> for ::hallows_rt::channel::Endpoint<::hallows_ring::Receiver<T>> {
                #[inline(always)]
                fn port(&mut self) -> &mut ::hallows_ring::Receiver<T> {
                    self
                }
            }
            /// The guest runtime finds channels by manifest name in the boot information.
            impl Endpoints for ::hallows_rt::Boot {
                type Sender<T: ::hallows_ring::Message> = ::hallows_rt::channel::Endpoint<::hallows_ring::Sender<T>>;
                type Receiver<T: ::hallows_ring::Message> = ::hallows_rt::channel::Endpoint<::hallows_ring::Receiver<T>>;
                fn sender<T: ::hallows_ring::Message>(&self, channel: &str) -> Option<Self::Sender<T>> {
                    ::hallows_rt::channel::sender::<T>(self, channel).ok()
                }
                fn receiver<T: ::hallows_ring::Message>(&self, channel: &str) -> Option<Self::Receiver<T>> {
                    ::hallows_rt::channel::receiver::<T>(self, channel).ok()
                }
                /// What the tool wrote into the channel directory from the system's specs.
                fn layout_hash(&self, channel: &str) -> u64 {
                    ::hallows_rt::channel::layout_hash(self, channel)
                }
            }
        }
    } else {
        quote!()
    };
    let endpoints_def = quote! {
        /// A channel end as the runtime hands it out: the ring endpoint,
        /// possibly wrapped (with a doorbell, say).
        pub trait Port<E> {
            /// The ring endpoint.
            fn port(&mut self) -> &mut E;
            /// The dispatch loop committed messages on this sending end
            /// (once per batch): ring a doorbell here if there is one.
            #[inline(always)]
            fn committed(&mut self) {}
        }
        impl<T: ::hallows_ring::Message> Port<::hallows_ring::Sender<T>> for ::hallows_ring::Sender<T> {
            #[inline(always)]
            fn port(&mut self) -> &mut ::hallows_ring::Sender<T> {
                self
            }
        }
        impl<T: ::hallows_ring::Message> Port<::hallows_ring::Receiver<T>> for ::hallows_ring::Receiver<T> {
            #[inline(always)]
            fn port(&mut self) -> &mut ::hallows_ring::Receiver<T> {
                self
            }
        }
        /// How the service finds its channels by manifest name: the one
        /// piece of glue between the generated code and a runtime.
        /// `None` if this partition has no such channel end.
        pub trait Endpoints {
            type Sender<T: ::hallows_ring::Message>: Port<::hallows_ring::Sender<T>>;
            type Receiver<T: ::hallows_ring::Message>: Port<::hallows_ring::Receiver<T>>;
            fn sender<T: ::hallows_ring::Message>(&self, channel: &str) -> Option<Self::Sender<T>>;
            fn receiver<T: ::hallows_ring::Message>(&self, channel: &str) -> Option<Self::Receiver<T>>;
            /// The layout hash the system expects on `channel` (the one
            /// both ends' specs agree on); 0, the default, checks nothing.
            /// [`Service::connect`] refuses a channel whose message type
            /// hashes otherwise, before opening anything.
            #[inline(always)]
            fn layout_hash(&self, channel: &str) -> u64 {
                let _ = channel;
                0
            }
        }
        #rt_glue
    };

    // Public senders: plain send channels. Route reply channels belong to the loop.
    let mut send_fields = Vec::new();
    let mut send_inits = Vec::new();
    let mut recv_fields = Vec::new();
    let mut recv_inits = Vec::new();
    let mut handler_fns = Vec::new();
    let mut send_commits = Vec::new();
    let mut channel_consts = Vec::new();
    let mut serve_fns = Vec::new();
    let mut arrivals = Vec::new();
    let mut dispatch_arms = Vec::new();
    let mut dispatch_bodies = Vec::new();
    let mut direct_calls = Vec::new();
    let mut call_fields = Vec::new();
    let mut call_inits = Vec::new();
    // `connect` attaches every receiving end before any sending end: a
    // (re)started service's peers see its consumers' new epochs no later
    // than its producers', which a Basilisk call relies on after a server
    // restart (docs/channels.md, "Across a restart").
    let mut consumer_lets = Vec::new();
    let mut producer_lets = Vec::new();
    let mut layout_checks = Vec::new();
    let mut rung_futures = Vec::new();
    let mut doorbell_masks = Vec::new();
    let mut task = 0u32;
    let mut in_place_msgs: Vec<usize> = Vec::new();
    for c in &m.channels {
        let field = rust_ident(&c.name);
        let bind = format_ident!("__channel_{}", c.name.replace('-', "_"));
        let name = c.name.as_str();
        let msg = format_ident!("{}", m.structs[c.message].name);
        layout_checks.push(quote! {
            let system = endpoints.layout_hash(#name);
            if system != 0 && system != #msg::LAYOUT_HASH {
                return Err(ConnectError::LayoutMismatch { channel: #name, system, service: #msg::LAYOUT_HASH });
            }
        });
        let konst = format_ident!("{}", c.name.replace('-', "_").to_uppercase());
        channel_consts.push(quote!(pub const #konst: &str = #name;));
        if c.call.is_some() {
            // Basilisk client calls own their two channels; the loop never serves them.
            match c.direction {
                ChannelDirection::Send => {
                    call_fields.push(quote!(#field: E::Sender<#msg>));
                    producer_lets.push(quote!(let #bind = endpoints.sender::<#msg>(#name).ok_or(ConnectError::MissingChannel(#name))?;));
                    call_inits.push(quote!(#field: #bind));
                    send_commits.push(quote!(self.calls.#field.committed();));
                }
                ChannelDirection::Receive => {
                    call_fields.push(quote!(#field: E::Receiver<#msg>));
                    consumer_lets.push(quote!(let #bind = endpoints.receiver::<#msg>(#name).ok_or(ConnectError::MissingChannel(#name))?;));
                    call_inits.push(quote!(#field: #bind));
                }
            }
            continue;
        }
        match (c.direction, c.route) {
            (ChannelDirection::Send, None) => {
                send_fields.push(quote!(pub #field: E::Sender<#msg>));
                send_commits.push(quote!(self.send.#field.committed();));
                producer_lets.push(quote!(let #bind = endpoints.sender::<#msg>(#name).ok_or(ConnectError::MissingChannel(#name))?;));
                send_inits.push(quote!(#field: #bind));
            }
            (ChannelDirection::Send, Some(_)) => {
                send_commits.push(quote!(self.receive.#field.committed();));
                recv_fields.push(quote!(#field: E::Sender<#msg>));
                producer_lets.push(quote!(let #bind = endpoints.sender::<#msg>(#name).ok_or(ConnectError::MissingChannel(#name))?;));
                recv_inits.push(quote!(#field: #bind));
            }
            (ChannelDirection::Receive, route) => {
                rung_futures.push(quote!(self.receive.#field.rung()));
                doorbell_masks.push(quote!(self.receive.#field.doorbell_mask()));
                recv_fields.push(quote!(#field: E::Receiver<#msg>));
                consumer_lets.push(quote!(let #bind = endpoints.receiver::<#msg>(#name).ok_or(ConnectError::MissingChannel(#name))?;));
                recv_inits.push(quote!(#field: #bind));
                let handler = rust_ident(c.handler.as_deref().unwrap_or("handle"));
                let serve = format_ident!("serve_{}", c.name.replace('-', "_"));
                let body = if let Some(r) = route {
                    let reply_c = &m.channels[m.routes[r].reply_channel];
                    let reply_field = rust_ident(&reply_c.name);
                    let reply_msg = format_ident!("{}", m.structs[reply_c.message].name);
                    let doc = format!(" Basilisk route: a request from \"{}\"; the returned reply goes to \"{}\".", c.name, reply_c.name);
                    handler_fns.push(quote! {
                        #[doc = #doc]
                        fn #handler(&mut self, request: #msg, send: &mut Senders<Self::Endpoints>) -> #reply_msg;
                    });
                    quote! {
                        // Reserve the replies first: a full reply channel leaves
                        // the requests in their ring (back-pressure), never drops a reply.
                        let mut out = match self.receive.#reply_field.port().reserve(#batch) {
                            Ok(out) => out,
                            Err(::hallows_ring::RingError::Full) => {
                                // Full, or the client has not yet acknowledged
                                // this sender: it frees room without ringing us,
                                // so `wait`/`ready` must not sleep on requests.
                                if self.receive.#field.port().recv_batch(1).is_ok() {
                                    self.held = true;
                                    turn.held += 1;
                                }
                                return;
                            }
                            Err(e) => return turn.note(e),
                        };
                        match self.receive.#field.port().recv_batch(out.len()) {
                            Ok(batch) => {
                                let n = batch.len();
                                for (k, request) in batch.iter().enumerate() {
                                    out.write(k, &self.handlers.#handler(request, &mut self.send));
                                }
                                batch.release();
                                out.commit_first(n);
                                self.receive.#reply_field.committed();
                                turn.handled += n;
                            }
                            Err(e) => turn.note(e),
                        }
                    }
                } else if c.in_place {
                    let doc = format!(
                        " A batch from channel \"{}\" where it lies in the ring (up to {} messages, \
                         in order, consumed when this returns): read each message's fields with \
                         `{}::FIELD_in(&batch.slot(i))`, copying them straight to where they go.",
                        c.name, m.budget.messages_per_turn, m.structs[c.message].name
                    );
                    if !in_place_msgs.contains(&c.message) {
                        in_place_msgs.push(c.message);
                    }
                    handler_fns.push(quote! {
                        #[doc = #doc]
                        fn #handler(&mut self, batch: &::hallows_ring::RecvBatch<'_, #msg>, send: &mut Senders<Self::Endpoints>);
                    });
                    quote! {
                        match self.receive.#field.port().recv_batch(#batch) {
                            Ok(batch) => {
                                let n = batch.len();
                                self.handlers.#handler(&batch, &mut self.send);
                                batch.release();
                                turn.handled += n;
                            }
                            Err(e) => turn.note(e),
                        }
                    }
                } else {
                    let doc = format!(" A message from channel \"{}\".", c.name);
                    handler_fns.push(quote! {
                        #[doc = #doc]
                        fn #handler(&mut self, message: #msg, send: &mut Senders<Self::Endpoints>);
                    });
                    quote! {
                        match self.receive.#field.port().recv_batch(#batch) {
                            Ok(batch) => {
                                let n = batch.len();
                                for message in batch.iter() {
                                    self.handlers.#handler(message, &mut self.send);
                                }
                                batch.release();
                                turn.handled += n;
                            }
                            Err(e) => turn.note(e),
                        }
                    }
                };
                serve_fns.push(quote! {
                    #[inline(always)]
                    fn #serve(&mut self, turn: &mut Turn) {
                        #body
                    }
                });
                let t = task;
                let tl = Literal::u32_suffixed(t);
                let ti = lit_usize(t as u64);
                let class = task_class_tokens(c.task_class);
                arrivals.push(quote! {
                    if !self.queued[#ti] {
                        match self.receive.#field.port().recv_batch(1) {
                            Ok(_) => self.arrive(#tl, #class, now, &mut turn),
                            Err(e) => turn.note(e),
                        }
                    }
                });
                dispatch_arms.push(quote!(#tl => self.#serve(&mut turn),));
                dispatch_bodies.push(quote!(self.#serve(&mut turn)));
                direct_calls.push(quote!(self.#serve(&mut turn);));
                task += 1;
            }
        }
    }

    let frame = m.frame_handler.as_ref().map(|h| {
        let period = m.scheduler.as_ref().and_then(|s| s.frame_period).unwrap_or(16_666_666);
        (rust_ident(h), period, m.scheduler.as_ref().and_then(|s| s.frame_deadline).unwrap_or(period))
    });
    let in_place_impls = in_place_accessors(m, &in_place_msgs);
    let ntasks = task as u64 + frame.is_some() as u64;
    let mut frame_fields = quote!();
    let mut frame_inits = quote!();
    let mut frame_types = quote!();
    if let Some((h, period, deadline)) = &frame {
        let period_l = lit_u64(*period);
        let deadline_l = lit_u64(*deadline);
        let ft = Literal::u32_suffixed(task);
        let fi = lit_usize(task as u64);
        handler_fns.push(quote! {
            /// Nagini frame handler: once per frame period, scheduled by its deadline.
            fn #h(&mut self, frame: Frame, send: &mut Senders<Self::Endpoints>);
        });
        frame_types = quote! {
            /// Frame period in nanoseconds (`frame_rate`).
            pub const FRAME_PERIOD: u64 = #period_l;
            /// A frame's deadline after its start (`frame_deadline`, default the period).
            pub const FRAME_DEADLINE: u64 = #deadline_l;
            /// One frame: its number and absolute deadline.
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
            pub struct Frame {
                pub index: u64,
                pub deadline: u64,
            }
        };
        frame_fields = quote!(next_frame: u64, frame: Frame,);
        frame_inits = quote!(next_frame: 0, frame: Frame { index: 0, deadline: 0 },);
        arrivals.push(quote! {
            if !self.queued[#fi] && now >= self.next_frame {
                // A late turn skips the frames it missed rather than queueing them.
                let start = now - (now - self.next_frame) % FRAME_PERIOD;
                self.frame = Frame { index: start / FRAME_PERIOD, deadline: start + FRAME_DEADLINE };
                self.next_frame = start + FRAME_PERIOD;
                self.arrive(#ft, ::hallows_sched::TaskClass::Frame { deadline: self.frame.deadline }, now, &mut turn);
            }
        });
        dispatch_arms.push(quote!(#ft => { let frame = self.frame; self.handlers.#h(frame, &mut self.send); turn.handled += 1; }));
        dispatch_bodies.push(quote!({ let frame = self.frame; self.handlers.#h(frame, &mut self.send); turn.handled += 1; }));
    }

    let ntasks_l = lit_usize(ntasks.max(1));
    // With one task the policy can only pick it: no dispatch on the id.
    let (dispatch, unqueue) = match dispatch_bodies.len() {
        1 => {
            let body = &dispatch_bodies[0];
            (quote!(#body;), quote!(self.queued[0] = false;))
        }
        _ => (
            quote! {
                match task.0 {
                    #(#dispatch_arms)*
                    _ => {}
                }
            },
            quote! {
                if let Some(q) = self.queued.get_mut(task.0 as usize) {
                    *q = false;
                }
            },
        ),
    };
    let (sched_items, sched_fields, sched_inits, turn_body, arrive_fn) = match &m.scheduler {
        Some(s) => {
            let (policy, config, body) = scheduler_tokens(s, m.budget.cores);
            let class = s.class.name();
            let doc = format!(" The `{class}` policy of `hallows-sched`, as the spec configures it.");
            (
                quote! {
                    #[doc = #doc]
                    pub type Policy = #policy;
                    /// The scheduler configuration from the spec (defaults from `hallows-sched` for what it leaves out).
                    pub fn scheduler_config() -> #config {
                        #body
                    }
                },
                quote!(scheduler: Policy, queued: [bool; #ntasks_l], #frame_fields),
                quote!(scheduler: Policy::new(scheduler_config()).map_err(ConnectError::Scheduler)?, queued: [false; #ntasks_l], #frame_inits),
                quote! {
                    let mut turn = Turn::default();
                    #(#arrivals)*
                    loop {
                        match ::hallows_sched::Scheduler::pick_next(&mut self.scheduler, 0, now) {
                            ::hallows_sched::Pick::Run { task, .. } => {
                                #dispatch
                                ::hallows_sched::Scheduler::task_done(&mut self.scheduler, 0, task, now);
                                #unqueue
                            }
                            ::hallows_sched::Pick::Idle { wake_at } => {
                                turn.wake_at = wake_at;
                                break;
                            }
                        }
                    }
                    turn
                },
                quote! {
                    #[inline(always)]
                    fn arrive(&mut self, task: u32, class: ::hallows_sched::TaskClass, now: u64, turn: &mut Turn) {
                        match ::hallows_sched::Scheduler::task_arrived(&mut self.scheduler, ::hallows_sched::TaskId(task), class, now) {
                            ::hallows_sched::Admission::Rejected => turn.rejected += 1,
                            _ => {
                                if let Some(q) = self.queued.get_mut(task as usize) {
                                    *q = true;
                                }
                            }
                        }
                    }
                },
            )
        }
        None => (
            quote!(),
            quote!(),
            quote!(),
            quote! {
                let _ = now;
                let mut turn = Turn::default();
                #(#direct_calls)*
                turn
            },
            quote!(),
        ),
    };
    let sched_display = if m.scheduler.is_some() {
        quote!(ConnectError::Scheduler(e) => write!(f, "service {}: the policy refused the spec's scheduler configuration: {:?}", SERVICE, e),)
    } else {
        quote!()
    };
    let sched_error = if m.scheduler.is_some() {
        quote! {
            /// The spec's scheduler configuration was refused by the policy.
            Scheduler(::hallows_sched::ConfigError),
        }
    } else {
        quote!()
    };
    let handler_time = match m.budget.handler_time {
        Some(t) => {
            let t = lit_u64(t);
            quote!(pub const BUDGET_HANDLER_TIME: Option<u64> = Some(#t);)
        }
        None => quote!(pub const BUDGET_HANDLER_TIME: Option<u64> = None;),
    };
    let ram = match m.budget.ram_bytes() {
        Some(r) => {
            let r = lit_u64(r);
            quote!(pub const BUDGET_RAM: Option<u64> = Some(#r);)
        }
        None => quote!(pub const BUDGET_RAM: Option<u64> = None;),
    };

    // Every sending end, every turn: what handlers sent, and what the
    // caller sent directly between turns (`service.send.x.try_send`), gets
    // its doorbell here; a runtime's `committed` rings only when something
    // was committed since its last ring.
    let commit_sends = if send_commits.is_empty() {
        quote!(self.serve(now))
    } else {
        quote! {
            let turn = self.serve(now);
            self.flush();
            turn
        }
    };
    let call_fns: Vec<TokenStream> = m
        .calls
        .iter()
        .map(|call| {
            let method = rust_ident(&call.handler);
            let (rq, rp) = (&m.channels[call.request_channel], &m.channels[call.reply_channel]);
            let (rq_field, rp_field) = (rust_ident(&rq.name), rust_ident(&rp.name));
            let (rq_msg, rp_msg) = (format_ident!("{}", m.structs[rq.message].name), format_ident!("{}", m.structs[rp.message].name));
            let doc = format!(
                " Basilisk call: sends `request` on \"{}\" (ringing its doorbell) and returns the reply from \"{}\". One call at a time: the server's route answers in order. While it waits, `idle(self)` runs (serve other channels with `turn`, sleep, or drive a peer in a test).",
                rq.name, rp.name
            );
            quote! {
                #[doc = #doc]
                pub fn #method(&mut self, request: &#rq_msg, mut idle: impl FnMut(&mut Self)) -> Result<#rp_msg, CallError> {
                    let sent_at = loop {
                        let at = self.calls.#rq_field.port().position();
                        match self.calls.#rq_field.port().try_send(request) {
                            Ok(()) => break at,
                            Err(::hallows_ring::RingError::Full) => idle(self),
                            // The server restarted before this request was
                            // sent; the ring has resynchronised with the new
                            // incarnation, to which it goes now.
                            Err(::hallows_ring::RingError::PeerRestarted) => {}
                            Err(e) => return Err(CallError::Request(e)),
                        }
                    };
                    self.calls.#rq_field.committed();
                    loop {
                        match self.calls.#rp_field.port().try_recv() {
                            Ok(reply) => return Ok(reply),
                            Err(::hallows_ring::RingError::Empty) => idle(self),
                            // The server restarted while the request was
                            // pending (any reply its previous incarnation sent
                            // has been received first). The new incarnation
                            // answers the request only if it was published
                            // after it attached; otherwise no reply will come.
                            Err(::hallows_ring::RingError::PeerRestarted) => {
                                if !self.calls.#rq_field.port().reaches_current_consumer(sent_at) {
                                    return Err(CallError::ServerRestarted);
                                }
                            }
                            Err(e) => return Err(CallError::Reply(e)),
                        }
                    }
                }
            }
        })
        .collect();
    let (calls_def, calls_field, calls_init) = if m.calls.is_empty() {
        (quote!(), quote!(), quote!())
    } else {
        (
            quote! {
                struct Calls<E: Endpoints> {
                    #(#call_fields,)*
                    _endpoints: ::core::marker::PhantomData<fn(E)>,
                }
                /// Why a Basilisk call returned no reply.
                #[derive(Clone, Copy, Debug, PartialEq, Eq)]
                pub enum CallError {
                    /// The server restarted while this request was pending and
                    /// its new incarnation will not answer it: the previous one
                    /// may or may not have acted on it (at most once). The
                    /// channels have resynchronised: the next call goes to the
                    /// new incarnation and no late reply to this one can reach it.
                    ServerRestarted,
                    /// The request channel is corrupt (the server wrote an impossible header).
                    Request(::hallows_ring::RingError),
                    /// The reply channel is corrupt.
                    Reply(::hallows_ring::RingError),
                }

                impl ::core::fmt::Display for CallError {
                    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        match self {
                            CallError::ServerRestarted => f.write_str("the server restarted; the request was not answered (retry if it is idempotent)"),
                            CallError::Request(e) => write!(f, "request channel: {e}"),
                            CallError::Reply(e) => write!(f, "reply channel: {e}"),
                        }
                    }
                }
            },
            quote!(calls: Calls<H::Endpoints>,),
            quote!(calls: Calls { #(#call_inits,)* _endpoints: ::core::marker::PhantomData },),
        )
    };
    // A route whose reply channel refused room holds its requests: the
    // client frees room (or acknowledges a new server) without ringing, so
    // the service must poll rather than sleep until the next turn serves them.
    let (held_field, held_init, held_reset, held_wait, held_ready) = if m.routes.is_empty() {
        (quote!(), quote!(), quote!(), quote!(), quote!(let held = false;))
    } else {
        (
            quote! {
                /// The last turn held requests back on a full or unacknowledged reply channel.
                held: bool,
            },
            quote!(held: false,),
            quote!(self.held = false;),
            quote! {
                if self.held {
                    return;
                }
            },
            quote!(let held = self.held;),
        )
    };
    let flush_fn = quote! {
        /// Rings the doorbell of every sending end that has messages
        /// committed since its last ring (on runtimes with doorbells;
        /// [`turn`](Self::turn) does this itself). Call it after sending
        /// directly when no turn follows soon.
        #[inline(always)]
        pub fn flush(&mut self) {
            #(#send_commits)*
        }
    };

    // With the runtime: a service can sleep until one of its receive
    // channels' doorbells rings instead of spinning on `turn`.
    let ready_impl = if opts.hallows_rt && !rung_futures.is_empty() {
        quote! {
            impl<H: Handlers<Endpoints = ::hallows_rt::Boot>> Service<H> {
                /// Completes once a receive channel's doorbell has rung since
                /// the last wait (`notify = "doorbell"`; the task sleeps, the
                /// core idles) or, with a poll channel among them, after one
                /// yield; after a turn that held requests back (`Turn::held`),
                /// also after one yield. Then call [`turn`](Self::turn). It does not wait for
                /// `Turn::wake_at` or frames: a service with those bounds its
                /// wait with a timer. The future owns what it waits on (it
                /// does not borrow the service), so a task can hold it across
                /// other awaits and race it against a timer.
                pub fn ready(&self) -> impl ::core::future::Future<Output = ()> + Send + 'static {
                    let mut rungs = [#(#rung_futures),*];
                    #held_ready
                    let mut yielded = false;
                    ::core::future::poll_fn(move |cx| {
                        if held {
                            // Requests wait on a reply channel's room: yield
                            // once, then turn again.
                            if yielded {
                                return ::core::task::Poll::Ready(());
                            }
                            yielded = true;
                            cx.waker().wake_by_ref();
                            return ::core::task::Poll::Pending;
                        }
                        let mut any = false;
                        for r in rungs.iter_mut() {
                            any |= ::core::future::Future::poll(::core::pin::Pin::new(r), cx).is_ready();
                        }
                        if any { ::core::task::Poll::Ready(()) } else { ::core::task::Poll::Pending }
                    })
                }

                /// Outside the executor: sleeps (`wfi`/`hlt`) until a receive
                /// channel's doorbell has rung since the last wait, then
                /// returns (call [`turn`](Self::turn)). With any poll-mode
                /// receive channel, or after a turn that held requests back
                /// (`Turn::held`), it returns at once: the caller polls.
                pub fn wait(&self) {
                    #held_wait
                    let mut mask = 0u32;
                    for bit in [#(#doorbell_masks),*] {
                        match bit {
                            Some(b) => mask |= b,
                            None => return,
                        }
                    }
                    ::hallows_rt::channel::wait_any(mask);
                }
            }
        }
    } else {
        quote!()
    };

    quote! {
        #types
        #ready_impl

        /// The service's name in its spec.
        pub const SERVICE: &str = #service_name;
        /// Most messages one handler batch takes from a channel (`messages_per_turn`).
        pub const MESSAGES_PER_TURN: usize = #batch;
        /// Cores the scheduler manages (`budget.cores`).
        pub const BUDGET_CORES: usize = #cores;
        #handler_time
        #ram
        /// The manifest names of the channels this service uses.
        pub mod channel {
            #(#channel_consts)*
        }
        #frame_types
        #in_place_impls
        #sched_items
        #endpoints_def

        /// Typed senders for the service's `send_channel`s, handed to every handler.
        pub struct Senders<E: Endpoints> {
            #(#send_fields,)*
            _endpoints: ::core::marker::PhantomData<fn(E)>,
        }

        struct Receivers<E: Endpoints> {
            #(#recv_fields,)*
            _endpoints: ::core::marker::PhantomData<fn(E)>,
        }

        /// The functions you write: one per receive channel, route and frame.
        pub trait Handlers {
            /// Where the channels come from (`hallows_rt::Boot` in a guest).
            type Endpoints: Endpoints;
            #(#handler_fns)*
        }

        /// Why [`Service::connect`] failed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ConnectError {
            /// The runtime has no such channel for this partition (or not in this direction).
            MissingChannel(&'static str),
            /// The system expects another message type on `channel`: its
            /// layout hash there is `system`, this service's is `service`.
            /// Nothing was opened.
            LayoutMismatch { channel: &'static str, system: u64, service: u64 },
            #sched_error
        }

        impl ::core::fmt::Display for ConnectError {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    ConnectError::MissingChannel(c) => write!(f, "service {}: no channel \"{}\" connects this partition in the direction the spec uses it", SERVICE, c),
                    ConnectError::LayoutMismatch { channel, system, service } => write!(
                        f,
                        "service {}: channel \"{}\" refused: the system expects message layout hash {:#018x}, this service was built with {:#018x}; the two ends were built from specs that disagree (run `hallows check`)",
                        SERVICE, channel, system, service
                    ),
                    #sched_display
                }
            }
        }

        /// What one [`Service::turn`] did.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Turn {
            /// Messages (and frames) handled.
            pub handled: usize,
            /// Channels whose peer restarted (in-flight messages dropped).
            pub peer_restarts: usize,
            /// Channels whose peer wrote an impossible header value.
            pub corrupt: usize,
            /// Arrivals the scheduler's queue refused (retried next turn).
            pub rejected: usize,
            /// The scheduler holds work back (batching) until this time: call
            /// `turn` again by then even if nothing arrives.
            pub wake_at: Option<u64>,
            /// Routes whose requests wait in their ring because the reply
            /// channel is full or its client has not yet acknowledged this
            /// server (at start or after a restart). The client frees room
            /// without ringing: call `turn` again soon (`wait` and `ready`
            /// return at once meanwhile).
            pub held: usize,
        }

        impl Turn {
            #[inline(always)]
            fn note(&mut self, e: ::hallows_ring::RingError) {
                match e {
                    ::hallows_ring::RingError::PeerRestarted => self.peer_restarts += 1,
                    ::hallows_ring::RingError::Corrupt => self.corrupt += 1,
                    ::hallows_ring::RingError::Full | ::hallows_ring::RingError::Empty => {}
                }
            }
        }

        /// The service: its handlers, its endpoints and its scheduler.
        pub struct Service<H: Handlers> {
            /// Your handler state.
            pub handlers: H,
            /// The send channels (also handed to every handler).
            pub send: Senders<H::Endpoints>,
            receive: Receivers<H::Endpoints>,
            #held_field
            #calls_field
            #sched_fields
        }
        #calls_def

        impl<H: Handlers> Service<H> {
            /// Finds every channel of the spec through `endpoints` and builds the scheduler.
            /// Every channel's message type is first compared with the one
            /// the system expects ([`Endpoints::layout_hash`]): a mismatch is
            /// [`ConnectError::LayoutMismatch`] and opens nothing.
            pub fn connect(handlers: H, endpoints: &H::Endpoints) -> Result<Self, ConnectError> {
                #(#layout_checks)*
                #(#consumer_lets)*
                #(#producer_lets)*
                Ok(Service {
                    send: Senders { #(#send_inits,)* _endpoints: ::core::marker::PhantomData },
                    receive: Receivers { #(#recv_inits,)* _endpoints: ::core::marker::PhantomData },
                    #calls_init
                    #held_init
                    handlers,
                    #sched_inits
                })
            }

            /// Serves what is pending now and returns; never blocks or spins.
            /// `now` is the runtime's monotonic clock in nanoseconds.
            pub fn turn(&mut self, now: u64) -> Turn {
                #held_reset
                #commit_sends
            }

            #[inline(always)]
            fn serve(&mut self, now: u64) -> Turn {
                #turn_body
            }

            #flush_fn
            #(#call_fns)*
            #arrive_fn
            #(#serve_fns)*
        }
    }
}

/// Generated code as formatted Rust source.
pub fn to_source(m: &Model, opts: &Options) -> String {
    let tokens = generate(m, opts);
    let header = format!(
        "// @generated by parseltongue {} from {}. Do not edit: change the spec.\n",
        env!("CARGO_PKG_VERSION"),
        opts.source_name.as_deref().unwrap_or("an inline spec")
    );
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => header + &prettyplease::unparse(&file),
        Err(_) => header + &tokens.to_string(),
    }
}
