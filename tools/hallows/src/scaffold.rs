//! `hallows new`: a project of one's own, outside this repository
//! (docs/first-system.md), and guests in it.
//!
//! A system project is a Cargo workspace whose members are `guests/*`; its
//! guests depend on the runtime (`hallows-rt`) of a RustHallows checkout by
//! path, and `hallows` builds the hypervisor from that checkout. A guest is
//! a crate with the runtime's linker-script line in its `build.rs`.
//!
//! With `--basilisk` the system is a web API (docs/basilisk.md): a guest
//! `api` (a Basilisk spec, its handlers, the shell serving them with
//! `hallows_basilisk::server`) on its own NIC, and the checkout's `store`
//! service (built in the checkout, as the hypervisor is) keeping its
//! records on a disk, the two connected by the store's channels.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::LINKER_SCRIPT_LINE;
use crate::workspace;

/// A name usable as a package, directory and partition name.
fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("`{name}` is not a usable {what} name: use 1 to 31 lowercase letters, digits, `-` or `_`, starting with a letter");
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if path.exists() {
        bail!("{} already exists: hallows new never overwrites a file; pick another name or remove it", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The boards a scaffolded manifest may name.
pub const BOARDS: &[&str] = &["qemu-virt-aarch64", "qemu-x86_64", "qemu-microvm"];

/// A manifest with one partition running `guest`.
pub fn manifest(board: &str, guest: &str) -> String {
    format!(
        "# A RustHallows system (docs/manifest.md). `hallows run` this file.\n\
         version = 1\n\
         board = \"{board}\"\n\
         \n\
         [[partition]]\n\
         name = \"{guest}\"\n\
         cores = [1]\n\
         ram = \"8 MiB\"\n\
         guest = \"{guest}\"\n\
         on_fault = \"stop\"\n"
    )
}

/// The host port a Basilisk system's manifest forwards to its API.
pub const API_PORT: u16 = 8080;

/// The bearer token a Basilisk system's API accepts (its boot arguments).
pub const API_TOKEN: &str = "dev-token";

/// A Basilisk system's manifest (`name`.toml): the API partition `api` on
/// its own NIC, the checkout's `store` partition on a disk, the store's two
/// channels between them, the API's port forwarded from the host.
pub fn basilisk_manifest(board: &str, name: &str) -> String {
    format!(
        "# A Basilisk API (docs/basilisk.md): guest `api` (guests/api: api.pt, the\n\
         # handlers, the shell) on its own NIC; its records in the `store`\n\
         # partition (RustHallows' store service, built in the checkout), which\n\
         # keeps them on its disk (target/hallows/disks/{name}/store.img). The two\n\
         # talk over the ring channels kv-requests and kv-replies, not TCP.\n\
         #   hallows run {name}.toml\n\
         #   curl -H 'Authorization: Bearer {API_TOKEN}' -d '{{\"text\":\"hello\"}}' localhost:{API_PORT}/notes\n\
         version = 1\n\
         board = \"{board}\"\n\
         \n\
         [[partition]]\n\
         name = \"api\"\n\
         cores = [1]\n\
         ram = \"32 MiB\"\n\
         guest = \"api\"\n\
         # The bearer tokens the API accepts (comma-separated).\n\
         bootargs = \"tokens={API_TOKEN}\"\n\
         on_fault = \"restart\"\n\
         nic = {{ address = \"10.0.2.15/24\", router = \"10.0.2.2\", mode = \"poll\" }}\n\
         dma = \"trusted\"\n\
         listen = [8080]\n\
         \n\
         [[partition]]\n\
         name = \"store\"\n\
         cores = [2]\n\
         ram = \"64 MiB\"\n\
         guest = \"store\"\n\
         on_fault = \"restart\"\n\
         dma = \"trusted\"\n\
         disk = {{ size = \"64 MiB\", durability = \"strict\" }}\n\
         \n\
         [[forward]]\n\
         host = {API_PORT}\n\
         to = \"api\"\n\
         port = 8080\n\
         \n\
         # The store's channel front: requests and replies of hallows-kv.\n\
         {}\n{}",
        channel("kv-requests", "api", "store", 1168, 64),
        channel("kv-replies", "store", "api", 1176, 512)
    )
}

/// A `[[channel]]` with a doorbell.
fn channel(name: &str, from: &str, to: &str, slot_size: u32, slots: u32) -> String {
    format!("[[channel]]\nname = \"{name}\"\nfrom = \"{from}\"\nto = \"{to}\"\nslot_size = {slot_size}\nslots = {slots}\nnotify = \"doorbell\"\n")
}

/// What `hallows new system` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A guest `hello` that prints and exits.
    Hello,
    /// A Basilisk API with the store service ([`basilisk_manifest`]).
    Basilisk,
}

/// `hallows new system DIR`: a workspace at `dir` (which must not exist)
/// with a guest `hello` (or, [`Kind::Basilisk`], the API guest `api`) and a
/// manifest `<name>.toml` that boots it on `board`. Returns the files
/// written.
pub fn new_system(dir: &Path, board: &str, kind: Kind) -> Result<Vec<PathBuf>> {
    let name = dir.file_name().and_then(|n| n.to_str()).context("the system needs a directory name")?;
    check_name(name, "system")?;
    if !BOARDS.contains(&board) {
        bail!("unknown board `{board}`: use one of {}", BOARDS.join(", "));
    }
    if kind == Kind::Basilisk && board == "qemu-x86_64" {
        bail!("a Basilisk system's API has a NIC of its own, which board `qemu-x86_64` cannot give it: use --board qemu-microvm (x86_64) or qemu-virt-aarch64");
    }
    if dir.exists() {
        bail!("{} already exists: give `hallows new system` a new directory", dir.display());
    }
    if workspace::root_from(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))).is_ok() {
        bail!(
            "{} would be inside another Cargo workspace: make the system somewhere else (its own directory, \
             outside any workspace), or add a guest to that workspace with `hallows new guest`",
            dir.display()
        );
    }
    let source = workspace::source_root()?;
    let path_of = |rel: &str| -> Result<String> {
        let p = source.join(rel);
        Ok(format!("{:?}", p.to_str().context("the RustHallows checkout's path is not UTF-8")?))
    };
    let mut deps = format!("hallows-rt = {{ path = {} }}\n", path_of("guests/runtime/rt")?);
    if kind == Kind::Basilisk {
        deps += &format!(
            "hallows-net = {{ path = {} }}\n\
             hallows-sched = {{ path = {} }}\n\
             hallows-ring = {{ path = {} }}\n\
             hallows-basilisk = {{ path = {}, features = [\"rt\"] }}\n\
             parseltongue = {{ path = {}, default-features = false }}\n",
            path_of("guests/runtime/net")?,
            path_of("schedulers/policy")?,
            path_of("hypervisor/ring")?,
            path_of("guests/frameworks/basilisk")?,
            path_of("dsl/parseltongue")?
        );
    }
    let mut written = Vec::new();
    let mut write = |rel: &str, text: &str| -> Result<()> {
        let p = dir.join(rel);
        write_new(&p, text)?;
        written.push(p);
        Ok(())
    };
    write(
        "Cargo.toml",
        &format!(
            "# A RustHallows system: its guests are the members; `hallows` finds\n\
             # them by package name. The runtime comes from the RustHallows checkout\n\
             # below (`hallows` builds the hypervisor there too, and the services of\n\
             # its own a manifest names, like `store`; HALLOWS_SOURCE points it\n\
             # elsewhere).\n\
             [workspace]\n\
             resolver = \"2\"\n\
             members = [\"guests/*\"]\n\
             \n\
             [workspace.package]\n\
             edition = \"2021\"\n\
             version = \"0.1.0\"\n\
             \n\
             [workspace.dependencies]\n\
             {deps}\
             \n\
             [profile.release]\n\
             debug = true\n"
        ),
    )?;
    // The checkout's toolchain (with the bare-metal targets) and its
    // dependency versions: the system builds as RustHallows was tested.
    for f in ["rust-toolchain.toml", "Cargo.lock"] {
        let text = std::fs::read_to_string(source.join(f)).with_context(|| format!("reading {}", source.join(f).display()))?;
        write(f, &text)?;
    }
    write(".gitignore", "/target\n*.img\n")?;
    match kind {
        Kind::Hello => {
            write(&format!("{name}.toml"), &manifest(board, "hello"))?;
            written.extend(new_guest_in(dir, "hello")?);
        }
        Kind::Basilisk => {
            write(&format!("{name}.toml"), &basilisk_manifest(board, name))?;
            for (rel, text) in basilisk_guest() {
                write(&format!("guests/api/{rel}"), &text)?;
            }
        }
    }
    Ok(written)
}

/// `hallows new guest NAME` in the workspace around `cwd`.
pub fn new_guest(cwd: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let root = workspace::root_from(cwd).context("`hallows new guest` runs inside a system's workspace (make one with `hallows new system DIR`)")?;
    new_guest_in(&root, name)
}

fn new_guest_in(root: &Path, name: &str) -> Result<Vec<PathBuf>> {
    check_name(name, "guest")?;
    // The workspace's own guests: one of its own may shadow a service of
    // the checkout (docs/first-system.md makes a `store`).
    if workspace::find_guests(root).unwrap_or_default().iter().any(|g| g.package == name) {
        bail!("the workspace at {} already has a guest `{name}`", root.display());
    }
    // This repository keeps its services under guests/services; a user's
    // workspace its guests under guests/.
    let in_repo = root.join("guests/runtime/rt/Cargo.toml").is_file();
    let dir = if in_repo { root.join("guests/services").join(name) } else { root.join("guests").join(name) };
    let (rt, package) = if in_repo {
        ("hallows-rt = { path = \"../../runtime/rt\" }", "version.workspace = true\nedition.workspace = true\nlicense.workspace = true")
    } else {
        ("hallows-rt.workspace = true", "version.workspace = true\nedition.workspace = true")
    };
    let files = [
        ("Cargo.toml", guest_cargo_toml(name, package, rt)),
        (
            "build.rs",
            format!(
                "//! Links this guest with the runtime's linker script `guest.ld` (which\n\
                 //! `hallows-rt`'s build script puts on the search path). Without it the\n\
                 //! link fails with `undefined symbol: __guest_end`.\n\
                 fn main() {{\n    {LINKER_SCRIPT_LINE}\n}}\n"
            ),
        ),
        (
            "src/main.rs",
            format!(
                "//! Guest `{name}`: a RustHallows partition's program (no_std, on the\n\
                 //! `hallows-rt` runtime: heap, time, async tasks, channels).\n\
                 #![no_std]\n\
                 #![no_main]\n\
                 #![forbid(unsafe_code)]\n\
                 \n\
                 use core::time::Duration;\n\
                 \n\
                 use hallows_rt::{{println, Boot}};\n\
                 \n\
                 hallows_rt::entry!(main);\n\
                 \n\
                 /// Runs when the partition boots; its return value is the partition's\n\
                 /// exit status (0: success).\n\
                 fn main(boot: &Boot) -> u64 {{\n    \
                     println!(\"hello from partition {{}} (guest {name})\", boot.name());\n    \
                     // The runtime's clock and async tasks: sleep 10 ms.\n    \
                     let started = hallows_rt::time::now();\n    \
                     hallows_rt::task::run(boot, hallows_rt::time::sleep(Duration::from_millis(10)));\n    \
                     let slept = hallows_rt::time::now() - started;\n    \
                     if slept < Duration::from_millis(10) {{\n        \
                         println!(\"woke after {{}} us: too early\", slept.as_micros());\n        \
                         return 1;\n    \
                     }}\n    \
                     println!(\"slept 10 ms\");\n    \
                     0\n\
                 }}\n"
            ),
        ),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let p = dir.join(rel);
        write_new(&p, &text)?;
        written.push(p);
    }
    Ok(written)
}

/// A guest crate's Cargo.toml: package `name` (its `package` keys), one
/// binary, `deps`.
fn guest_cargo_toml(name: &str, package: &str, deps: &str) -> String {
    format!("[package]\nname = \"{name}\"\n{package}\n\n[[bin]]\nname = \"{name}\"\npath = \"src/main.rs\"\ntest = false\nbench = false\n\n[dependencies]\n{deps}\n")
}

/// The spec of a Basilisk system's API (`guests/api/api.pt`).
pub const API_SPEC: &str = r#"// The API: what it serves, checked and compiled to Rust by build.rs
// (docs/basilisk.md). Change it and `hallows run` again.
parseltongue_version 1;
use_extension basilisk;

service api {
    // GET/POST /notes, GET/PUT/PATCH/DELETE /notes/{id}: records kept in
    // the store partition, each body validated as declared (422 names
    // every failing field).
    resource note at "/notes" {
        field text: string { required; max_length 500; }
    }

    // A route of your own: `health` in src/handlers.rs.
    http_route GET "/health" handled_by health;

    // Every request needs `Authorization: Bearer TOKEN`, with a token of
    // the partition's boot arguments (`tokens=...` in the manifest).
    authentication bearer;

    // The scheduler of the partition's tasks: a request that has run
    // 50 us while another waits yields to it at its next await. The queue
    // holds every task at once (up to 64 connections, and a few more).
    scheduler_class api {
        quantum = 50us;
        preempt_on_arrival = true;
        queue_capacity = 256;
    }
}
"#;

/// The files of a Basilisk system's guest `api`, relative to its crate.
fn basilisk_guest() -> [(&'static str, String); 5] {
    let deps = "hallows-rt.workspace = true\n\
                hallows-net.workspace = true\n\
                hallows-basilisk.workspace = true\n\
                # The code api.pt compiles to names these two.\n\
                hallows-sched.workspace = true\n\
                hallows-ring.workspace = true";
    let cargo = guest_cargo_toml("api", "version.workspace = true\nedition.workspace = true", deps)
        + "\n# The spec build.rs compiles (`hallows check` reads it here).\n\
           [package.metadata.hallows]\n\
           spec = \"api.pt\"\n\
           \n\
           [build-dependencies]\n\
           parseltongue.workspace = true\n";
    [
        ("Cargo.toml", cargo),
        (
            "build.rs",
            format!(
                "//! Links this guest with the runtime's linker script `guest.ld` (without\n\
                 //! it the link fails with `undefined symbol: __guest_end`) and compiles\n\
                 //! its spec `api.pt` to Rust (`$OUT_DIR/api.rs`, which src/main.rs\n\
                 //! includes). A spec error stops the build at its file:line:col.\n\
                 fn main() {{\n    \
                     {LINKER_SCRIPT_LINE}\n    \
                     let options = parseltongue::Options {{\n        \
                         hallows_rt: true,\n        \
                         ..Default::default()\n    \
                     }};\n    \
                     parseltongue::build::compile_with(\"api.pt\", &options);\n\
                 }}\n"
            ),
        ),
        ("api.pt", API_SPEC.to_string()),
        ("src/main.rs", API_MAIN.to_string()),
        ("src/handlers.rs", API_HANDLERS.to_string()),
    ]
}

/// The shell of a Basilisk system's guest `api` (`src/main.rs`).
const API_MAIN: &str = r#"//! Guest `api`: the API `api.pt` declares, its hand-written routes in
//! `handlers.rs`. This file boots the partition: its network, the store
//! partition's client, the application, and HTTP/1.1 on the manifest's
//! first `listen` port, a task per connection (`hallows_basilisk::server`),
//! a log line per request on the console.
//!
//! Boot arguments: `tokens=a,b`, the bearer tokens it accepts.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;

use hallows_basilisk::auth::Tokens;
use hallows_basilisk::lock::Lock;
use hallows_basilisk::server::{self, Stop};
use hallows_basilisk::stats::log_line;
use hallows_basilisk::store::KvStore;
use hallows_basilisk::Request;
use hallows_rt::task::spawn;
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// What `api.pt` compiles to (build.rs): module `web` (the record type
/// `Note`, the trait `Routes` of the hand-written routes, `App`) and the
/// scheduler's `Policy`.
#[allow(dead_code, clippy::all, unused_imports, unused_variables)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

mod handlers;

fn main(boot: &Boot) -> u64 {
    // The partition's tasks run under the spec's `api` scheduler.
    let policy = match spec::Policy::new(spec::scheduler_config()) {
        Ok(p) => p,
        Err(e) => {
            println!("api: the spec's scheduler configuration was refused: {e:?}");
            return 1;
        }
    };
    match hallows_rt::task::run_with(boot, Box::new(policy), serve(boot.clone())) {
        Ok(()) => 0,
        Err(e) => {
            println!("api: {e}");
            1
        }
    }
}

async fn serve(boot: Boot) -> Result<(), String> {
    let net = hallows_net::init(&boot).map_err(|e| alloc::format!("net init failed: {e}"))?;
    let store = KvStore::connect(&boot, Duration::from_secs(120)).await?;
    let tokens = Tokens::parse(boot.arg("tokens").unwrap_or(""));
    let app = spec::web::App::new(handlers::Handlers, tokens);
    // One application and one store client, shared by the connections.
    let shared = Arc::new(Lock::new((app, store)));
    let (mut listener, port) = server::bind(&boot)?;
    let routes = spec::web::ROUTES.len();
    println!("api: ready on {}:{port} ({routes} routes)", net.address);
    server::accept_until(&mut listener, &Stop::default(), |s| {
        let shared = shared.clone();
        let handler = async move |req: &Request<'_>| {
            let mut g = shared.lock().await;
            let (app, store) = &mut *g;
            let resp = app.handle(req, store, time::now_nanos).await;
            let line = log_line(req.method.as_str(), req.path, resp.status, app.last_ns);
            println!("{line}");
            resp
        };
        spawn(server::serve_conn(s, server::LIMITS, handler));
    })
    .await;
    Ok(())
}
"#;

/// The hand-written routes of a Basilisk system's guest `api`
/// (`src/handlers.rs`).
const API_HANDLERS: &str = r#"//! The hand-written routes of `api.pt` (its `http_route`s): one async
//! method of `Routes` each, with the path's parameters typed.

use hallows_basilisk::store::Store;
use hallows_basilisk::{Request, Response};

use crate::spec::web::Routes;

/// What the routes keep between requests (nothing yet).
pub struct Handlers;

impl<S: Store> Routes<S> for Handlers {
    /// `GET /health`
    async fn health(&mut self, _store: &mut S, _req: &Request<'_>) -> Response {
        Response::json(200, b"{\"ok\":true}".to_vec())
    }
}
"#;
