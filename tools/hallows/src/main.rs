//! `hallows`: check, inspect, build and run RustHallows systems.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hallows::{build, image, qemu, workspace};
use hallows::build::progress;

#[derive(Parser)]
#[command(name = "hallows", version, about = "Build and run RustHallows partitioned systems")]
struct Cli {
    /// Let the manifest name board and spec files outside the project (the
    /// workspace, or the manifest's directory outside one). Only for
    /// manifests you trust: hallows reads those files and echoes their lines.
    #[arg(long, global = true)]
    allow_outside_paths: bool,
    /// Show cargo's whole output while building (every crate, warnings).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum New {
    /// A system of your own in a new directory DIR (outside this repository):
    /// a Cargo workspace, a guest `hello` and a manifest `DIR.toml` that boots.
    System {
        dir: PathBuf,
        /// The board the manifest names.
        #[arg(long, default_value = "qemu-virt-aarch64", value_parser = clap::builder::PossibleValuesParser::new(hallows::scaffold::BOARDS))]
        board: String,
        /// A Basilisk web API instead of `hello`: guest `api` (a spec with a
        /// `note` resource, its handlers, the shell) on its own NIC, its
        /// records in the `store` partition, host port 8080 forwarded to it
        /// (docs/basilisk.md).
        #[arg(long)]
        basilisk: bool,
    },
    /// A guest crate NAME in the workspace around the current directory:
    /// Cargo.toml, build.rs (linked with the runtime) and src/main.rs.
    Guest { name: String },
}

/// `hallows linux ...` (docs/linux.md).
#[derive(Subcommand)]
enum Linux {
    /// Download Debian's arm64 kernel and busybox-static with apt (signature
    /// and hashes checked by apt; nothing installed on the host) into
    /// target/linux, or find them there; print package, version, sha256.
    Fetch {
        /// Ask apt again even if target/linux already holds a verified copy.
        #[arg(long)]
        refresh: bool,
    },
    /// Build a Linux partition's initramfs (busybox, the init script
    /// guests/linux/initramfs/init, ring-peer, modules) from the fetched
    /// packages; fetches them first if needed.
    Initramfs {
        /// Where to write it (default target/linux/initramfs.cpio).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// A kernel module to load at boot, with its dependencies (repeat).
        #[arg(long = "module", value_name = "NAME")]
        modules: Vec<String>,
        /// An extra executable file: HOST_PATH:PATH_IN_ARCHIVE (repeat).
        #[arg(long = "file", value_name = "SRC:DEST")]
        files: Vec<String>,
        /// Leave out ring-peer (no musl build).
        #[arg(long)]
        without_ring_peer: bool,
        /// A Debian arm64 package whose programs and shared libraries go
        /// in, with its shared-library dependencies (repeat), e.g.
        /// `--package redis-server --package redis-tools`; downloaded and
        /// checked like the kernel into target/linux/pkgs.
        #[arg(long = "package", value_name = "NAME")]
        packages: Vec<String>,
        /// Print the archive's entries after writing it.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Linux partitions: fetch Debian's kernel and busybox, build the initramfs.
    #[command(subcommand)]
    Linux(Linux),
    /// Create a system project or a guest (docs/first-system.md).
    #[command(subcommand)]
    New(New),
    /// Validate a manifest: exit 0 if valid, 1 with every error if not.
    Check { manifest: PathBuf },
    /// Print the resolved system: partitions, placement, memory map.
    Inspect { manifest: PathBuf },
    /// Print the JSON Schema of the manifest format.
    Schema,
    /// Build the guests and the hypervisor and compose one bootable image.
    Build {
        manifest: PathBuf,
        /// Output image (default: target/hallows/<manifest name>.img).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also write a bootable EFI system partition image (FAT, with
        /// EFI/BOOT/BOOTAA64.EFI or BOOTX64.EFI and the image) next to it,
        /// `<name>.esp.img`, and print its path (docs/deploy.md).
        #[arg(long)]
        uefi: bool,
    },
    /// Build, then boot the system under QEMU.
    ///
    /// Runs until the system ends, Ctrl-C or SIGTERM (no time limit unless
    /// --timeout); then, if the machine did not finish by itself, prints
    /// each partition's state.
    ///
    /// Operator commands, one per line on standard input (sent to the
    /// hypervisor over the console's receive side, which no partition can
    /// reach):
    ///   status         one `state:` line per partition (running, uptime,
    ///                  restarts, faults, watchdog misses)
    ///   stop NAME      stop the partition now
    ///   restart NAME   restart it now, whatever its fault policy
    ///
    /// Exit status:
    ///   0    every partition exited 0
    ///   1    some partition exited non-zero or was stopped by a fault
    ///   2    the hypervisor refused the system at boot
    ///   3    the hypervisor panicked
    ///   4    the machine stopped without the hypervisor's status line
    ///   64   hallows could not check, build or start the system
    ///   124  the --timeout passed
    ///   130  stopped by Ctrl-C (SIGINT) or SIGTERM
    #[command(verbatim_doc_comment)]
    Run {
        manifest: PathBuf,
        /// Seconds before the machine is stopped (default: no limit).
        #[arg(long)]
        timeout: Option<u64>,
        /// Debug this partition: QEMU waits with its gdb stub on
        /// 127.0.0.1, and gdb-multiarch attaches with the partition's guest
        /// symbols to its boot core only (thread-specific breakpoints) and
        /// stops in the guest's `main`. The machine stops when gdb ends.
        #[arg(long, value_name = "PARTITION")]
        gdb: Option<String>,
        /// The gdb stub's port on 127.0.0.1 (default: a free one).
        #[arg(long, requires = "gdb", value_name = "PORT")]
        gdb_port: Option<u16>,
        /// Run gdb non-interactively: after stopping in `main`, the
        /// commands in FILE (`gdb -batch -x FILE`); exits with gdb's status.
        #[arg(long, requires = "gdb", value_name = "FILE")]
        gdb_batch: Option<PathBuf>,
        /// Back partition PARTITION's `disk` with FILE instead of the
        /// manifest's image (created with the manifest's size if missing).
        /// Repeatable.
        #[arg(long = "disk", value_name = "PARTITION=FILE")]
        disks: Vec<String>,
        /// Boot through UEFI firmware (AAVMF at EL2, OVMF) from the EFI
        /// system partition image `build --uefi` writes, instead of QEMU's
        /// -kernel (docs/deploy.md).
        #[arg(long)]
        uefi: bool,
        /// How to show a partition's `display`: `none` (default; screenshots
        /// still work) or `vnc` (QEMU's VNC server on 127.0.0.1 only, on a
        /// free port from 5900, printed). With a display, QMP listens on the
        /// Unix socket target/hallows/qmp/<manifest>.sock for `hallows
        /// screenshot` and `hallows input`.
        #[arg(long, default_value = "none", value_parser = ["none", "vnc"])]
        display: String,
        /// Extra QEMU arguments.
        #[arg(last = true)]
        qemu_args: Vec<String>,
    },
    /// Build, boot the system and keep it up for clients on the host
    /// (docs/deploy.md#make-serve).
    ///
    /// Waits until every [[forward]]ed service answers its protocol (HTTP
    /// GET, Redis PING, Kafka ApiVersions, PostgreSQL SSLRequest: the
    /// forward's `protocol`, else by its port), prints the client command
    /// for each (curl, redis-cli, kcat, psql), the VNC address of a display
    /// and the QMP socket, and runs until Ctrl-C or SIGTERM. Then it asks
    /// the hypervisor for each partition's state and to stop each
    /// partition, and prints the per-partition summary once the machine has
    /// powered off. Operator commands on standard input as for `run`.
    ///
    /// Exit status:
    ///   0    stopped cleanly (or the system ended by itself with status 0)
    ///   1    a partition was stopped by a fault or exited non-zero, or the
    ///        machine did not power off and was stopped through QMP or killed
    ///   5    a service did not answer within --ready-timeout (stopped)
    ///   64   hallows could not check, build or start the system
    #[command(verbatim_doc_comment)]
    Serve {
        manifest: PathBuf,
        /// Seconds every forwarded service has to answer after QEMU starts.
        #[arg(long, default_value_t = 300)]
        ready_timeout: u64,
        /// Back partition PARTITION's `disk` with FILE instead of the
        /// manifest's image (created with the manifest's size if missing).
        /// Repeatable.
        #[arg(long = "disk", value_name = "PARTITION=FILE")]
        disks: Vec<String>,
    },
    /// The flagship system's scripted scenario (`make run`, docs/demo.md):
    /// build, boot on fresh disks, drive it with the load generator inside
    /// and curl, redis-cli, kcat and psql from the host, check every
    /// result, measure the rates, screenshot the dashboard
    /// (target/hallows/<manifest>-dashboard.png), stop, print a summary.
    ///
    /// Exit status: 0 every check passed; 1 a check failed (the summary
    /// says which, the console is in target/hallows/<manifest>-console.log);
    /// 64 the scenario could not run (a missing client, a manifest that is
    /// not the flagship's shape); 130 Ctrl-C.
    #[command(verbatim_doc_comment)]
    Demo {
        #[arg(default_value = "vmm-config/examples/flagship.toml")]
        manifest: PathBuf,
    },
    /// Save a screenshot of the display of a system that `hallows run` is
    /// running (QMP `screendump`, converted to PNG).
    Screenshot {
        manifest: PathBuf,
        /// The PNG file to write.
        output: PathBuf,
    },
    /// Send keyboard or pointer input to the display of a system that
    /// `hallows run` is running (QMP `input-send-event`):
    /// `key QCODE` (QEMU key names: 3, tab, ret, right, ...) or
    /// `click X Y` (display pixels).
    Input {
        manifest: PathBuf,
        /// `key` or `click`.
        #[arg(value_parser = ["key", "click"])]
        kind: String,
        /// The key name, or X and Y.
        args: Vec<String>,
    },
    /// Count the instructions from reset to the first instruction of the
    /// first partition's guest, on all cores (deterministic: QEMU -icount
    /// shift=0,sleep=off; the machine is stopped there).
    BootCost {
        manifest: PathBuf,
        /// Boot through UEFI firmware instead, and count from the UEFI
        /// loader's exit path (its first instruction after
        /// ExitBootServices) to the first guest instruction (docs/deploy.md).
        #[arg(long)]
        uefi: bool,
    },
    /// Run the system with every instruction traced and print, per core,
    /// the instructions executed and how many were the hypervisor's
    /// (deterministic: QEMU -icount shift=0,sleep=off; two runs print the
    /// same figures).
    El2Cost {
        manifest: PathBuf,
        /// Functions listed per core, most instructions first.
        #[arg(long, default_value_t = 12)]
        top: usize,
        /// Also write every hypervisor instruction address executed, per
        /// core, with its count (`core address count function`, one per
        /// line, by core then address) to this file: for comparing two
        /// runs instruction by instruction.
        #[arg(long)]
        pcs: Option<PathBuf>,
    },
    /// EL2 instructions per Linux timer tick and per IPI between a Linux
    /// partition's vCPUs, and its traps by kind: boots untraced, traces
    /// the hypervisor between its init's `hallows-cost: trace on` and
    /// `trace off` lines (`hallows.test=cost`; docs/linux.md, "Measured").
    LinuxCost {
        manifest: PathBuf,
        /// The Linux partition (default: the manifest's only one).
        #[arg(long)]
        partition: Option<String>,
        /// Functions listed per kind of trap, most instructions first.
        #[arg(long, default_value_t = 0)]
        top: usize,
    },
    /// Run the system deterministically (-icount shift=0,sleep=off) with
    /// the bench's instruction-counting plugin, writing every core's
    /// counts at each bench marker to MARKS (docs/benchmarks.md); prints
    /// the console and exits with the system's status.
    BenchCount {
        manifest: PathBuf,
        /// Where the plugin writes the marks.
        #[arg(long)]
        marks: PathBuf,
        /// Seconds before the machine is stopped.
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
        /// Stop the machine once its console shows TEXT (and exit 0),
        /// instead of waiting for it to end.
        #[arg(long, value_name = "TEXT")]
        until: Option<String>,
        /// Also count per core and code address between marks SEQ and
        /// SEQ+1, into MARKS.profile (`pc CORE ADDR COUNT` lines).
        #[arg(long, value_name = "SEQ")]
        profile: Option<u64>,
    },
    /// Instructions per keep-alive HTTP request through a forward: the
    /// hypervisor's and the serving partitions' guests, split by part of
    /// the stack. One traced run; the instructions logged while the
    /// measured requests ran, divided by their number.
    NetCost {
        manifest: PathBuf,
        /// Requests measured.
        #[arg(long, default_value_t = 200)]
        requests: u64,
        /// Requests sent first on each connection, not measured.
        #[arg(long, default_value_t = 20)]
        warm_up: u64,
        /// Keep-alive connections the requests are spread over (with more
        /// than one, polling partitions have little time to idle).
        #[arg(long, default_value_t = 1)]
        connections: u64,
        /// The path requested; `redis:[P<depth>:]COMMAND ARGS` sends
        /// Redis requests instead (`redis:GET k`; `redis:P16:GET k`: 16
        /// pipelined per write); `kafka:[P<depth>:]TOPIC` Kafka Produce
        /// requests (acks=all, one 16-record batch each, `depth` in flight).
        #[arg(long, default_value = "/")]
        path: String,
        /// The host port of the forward to use (default: the first).
        #[arg(long)]
        port: Option<u16>,
        /// Also list the guest functions that ran the most instructions
        /// (this many, per request, busy and idle windows).
        #[arg(long, default_value_t = 0)]
        top: usize,
        /// A header sent with every HTTP request (`Name: value`; repeat for
        /// more), e.g. `--header "Authorization: Bearer TOKEN"`.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// One request sent before the warm-up, with the headers; it must
        /// answer 2xx: `METHOD PATH [BODY]` (a body is sent as JSON), e.g.
        /// `--prime 'POST /todos {"title":"x"}'`.
        #[arg(long)]
        prime: Option<hallows::netcost::Prime>,
        /// Another partition to count (repeat for more): one the request
        /// reaches over channels, such as a store behind the web partition.
        #[arg(long = "also", value_name = "PARTITION")]
        also: Vec<String>,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // A bare file name has an empty parent; every path the manifest names
    // is relative to its directory, so make that `.`.
    if let Cmd::Check { manifest }
    | Cmd::Inspect { manifest }
    | Cmd::Build { manifest, .. }
    | Cmd::Run { manifest, .. }
    | Cmd::Serve { manifest, .. }
    | Cmd::Screenshot { manifest, .. }
    | Cmd::Demo { manifest }
    | Cmd::Input { manifest, .. }
    | Cmd::BootCost { manifest, .. }
    | Cmd::El2Cost { manifest, .. }
    | Cmd::LinuxCost { manifest, .. }
    | Cmd::BenchCount { manifest, .. }
    | Cmd::NetCost { manifest, .. } = &mut cli.cmd
    {
        if manifest.parent().is_some_and(|p| p.as_os_str().is_empty()) {
            *manifest = Path::new(".").join(&*manifest);
        }
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            // Not a system status (0..=4): hallows itself failed.
            ExitCode::from(64)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let outside = cli.allow_outside_paths;
    build::set_verbose(cli.verbose);
    match cli.cmd {
        Cmd::New(New::System { dir, board, basilisk }) => {
            let kind = if basilisk { hallows::scaffold::Kind::Basilisk } else { hallows::scaffold::Kind::Hello };
            let files = hallows::scaffold::new_system(&dir, &board, kind)?;
            for f in &files {
                println!("created {}", f.display());
            }
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("system");
            println!("next: cd {} && hallows run {name}.toml", dir.display());
            if basilisk {
                let (port, token) = (hallows::scaffold::API_PORT, hallows::scaffold::API_TOKEN);
                println!("then, once it answers: curl -H 'Authorization: Bearer {token}' localhost:{port}/notes");
            }
            Ok(0)
        }
        Cmd::New(New::Guest { name }) => {
            let files = hallows::scaffold::new_guest(Path::new("."), &name)?;
            for f in &files {
                println!("created {}", f.display());
            }
            println!("next: name it in a partition of your manifest: guest = \"{name}\"");
            Ok(0)
        }
        Cmd::Linux(Linux::Fetch { refresh }) => {
            let root = workspace::root_from(Path::new("."))?;
            let f = hallows::linux::fetch(&root, refresh)?;
            println!("{}", hallows::linux::describe(&f));
            Ok(0)
        }
        Cmd::Linux(Linux::Initramfs { out, modules, files, without_ring_peer, packages, list }) => {
            let root = workspace::root_from(Path::new("."))?;
            let files = files
                .iter()
                .map(|f| match f.split_once(':') {
                    Some((src, dest)) => Ok((PathBuf::from(src), dest.trim_start_matches('/').to_owned())),
                    None => anyhow::bail!("--file {f}: expected HOST_PATH:PATH_IN_ARCHIVE"),
                })
                .collect::<Result<Vec<_>>>()?;
            println!("{}", hallows::linux::describe(&hallows::linux::fetch(&root, false)?));
            let spec = hallows::linux::InitramfsSpec { modules, files, links: Vec::new(), without_ring_peer, packages };
            let path = hallows::linux::initramfs(&root, &spec, out.as_deref())?;
            println!("{}", hallows::linux::describe_archive(&path)?);
            if list {
                for e in hallows::cpio::read(&std::fs::read(&path)?)? {
                    let what = match e.kind {
                        hallows::cpio::Kind::Dir => "dir".to_owned(),
                        hallows::cpio::Kind::File(d) => format!("{} bytes", d.len()),
                        hallows::cpio::Kind::Symlink(t) => format!("-> {t}"),
                        hallows::cpio::Kind::CharDev(a, b) => format!("char {a}:{b}"),
                    };
                    println!("  /{} {:o} {what}", e.name, e.perm);
                }
            }
            Ok(0)
        }
        Cmd::Check { manifest } => {
            let ctx = context(&manifest, outside);
            // Parseltongue (issue 6): once the manifest itself is valid, the
            // service specs its partitions name (`spec = "x.pt"`) are
            // checked against it: channels, directions, slot sizes, message
            // layouts at both ends, budgets.
            let sys = match vmm_config::load(&manifest, &ctx) {
                Ok(sys) => sys,
                Err(diags) => {
                    vmm_config::cli::report(&diags);
                    return Ok(1);
                }
            };
            // The guests' own specs too (`[package.metadata.hallows] spec`
            // of each guest crate): a manifest without `spec` keys is
            // checked all the same.
            let root = manifest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            let root = workspace::root_from(&root).ok();
            if let Err(diags) = workspace::check_specs(root.as_deref(), &sys, &manifest) {
                eprint!("{diags}");
                return Ok(1);
            }
            println!("{}", vmm_config::cli::summary(&manifest, &sys));
            Ok(0)
        }
        Cmd::Inspect { manifest } => {
            let ctx = context(&manifest, outside);
            Ok(vmm_config::cli::inspect(&manifest, &ctx) as u8)
        }
        Cmd::Schema => {
            println!("{}", vmm_config::cli::schema());
            Ok(0)
        }
        Cmd::Build { manifest, output, uefi } => {
            let (_, path, _) = build_image(&manifest, output, outside, uefi)?;
            println!("{}", path.display());
            Ok(0)
        }
        Cmd::Run { manifest, gdb: Some(name), gdb_port, gdb_batch, timeout, qemu_args, disks, uefi, .. } => {
            if uefi {
                anyhow::bail!("--gdb boots the direct image only (no --uefi)");
            }
            if !disks.is_empty() {
                anyhow::bail!("--gdb takes no --disk: the session's disks are the manifest's");
            }
            if !qemu_args.is_empty() {
                anyhow::bail!("--gdb takes no extra QEMU arguments (the session's machine is the manifest's)");
            }
            if timeout.is_some() {
                anyhow::bail!("--gdb takes no --timeout: the machine runs until gdb exits");
            }
            let (sys, path, artifacts) = build_image(&manifest, None, outside, false)?;
            let root = workspace::root_from(manifest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
            // Ctrl-C belongs to gdb (it interrupts the target): ignore it here.
            ctrlc::set_handler(|| {}).context("installing the Ctrl-C handler")?;
            // Where the partition's guest was built (the workspace, or the
            // checkout for one of its services).
            let guest = sys.partitions.iter().find(|p| p.name == name).map(|p| artifacts.guest(&p.guest));
            let guests = guest.as_deref().and_then(Path::parent).map_or_else(|| artifacts.guest_dir.clone(), Path::to_path_buf);
            let scratch = root.join("target/hallows");
            let s = hallows::gdb::session(&sys, &path, &guests, &name, gdb_port, gdb_batch.as_deref(), &scratch, false)?;
            Ok(if s.gdb.success() { 0 } else { 1 })
        }
        Cmd::Demo { manifest } => {
            qemu::check_accel()?;
            let missing = hallows::demo::missing_clients();
            if !missing.is_empty() {
                anyhow::bail!(
                    "the scenario's clients are missing: {} (`make deps` installs them; or apt-get install {})",
                    missing.iter().map(|m| m.0).collect::<Vec<_>>().join(", "),
                    missing.iter().map(|m| m.1).collect::<Vec<_>>().join(" ")
                );
            }
            let start = std::time::Instant::now();
            let (mut sys, path, _) = build_image(&manifest, None, outside, false)?;
            let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
            static STOP: AtomicBool = AtomicBool::new(false);
            ctrlc::set_handler(|| STOP.store(true, Ordering::Release)).context("installing the Ctrl-C handler")?;
            progress(&format!("built in {:.0} s; the scenario starts", start.elapsed().as_secs_f64()));
            let (report, log) = hallows::demo::run_manifest(&root, &manifest, &mut sys, &path, &STOP)?;
            print!("{}", report.summary());
            println!("  the machine's console: {}", log.display());
            if report.passed() {
                Ok(0)
            } else {
                eprintln!("hallows demo: a check failed (above); the console's last lines:");
                let lines: Vec<&str> = report.console.lines().collect();
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("  {l}");
                }
                Ok(1)
            }
        }
        Cmd::Screenshot { manifest, output } => {
            let mut q = connect_display(&manifest, outside)?;
            let img = q.screenshot()?;
            img.write_png(&output)?;
            println!("{}: {}x{} pixels", output.display(), img.width, img.height);
            Ok(0)
        }
        Cmd::Input { manifest, kind, args } => {
            let mut q = connect_display(&manifest, outside)?;
            match (kind.as_str(), args.as_slice()) {
                ("key", [k]) => q.key(k)?,
                ("click", [x, y]) => {
                    let (Ok(x), Ok(y)) = (x.parse::<u32>(), y.parse::<u32>()) else {
                        anyhow::bail!("click {x} {y}: X and Y are display pixels (whole numbers)");
                    };
                    q.click(x, y)?
                }
                _ => anyhow::bail!("write `hallows input MANIFEST key QCODE` or `hallows input MANIFEST click X Y`"),
            }
            Ok(0)
        }
        Cmd::Run { manifest, timeout, qemu_args, disks, uefi, display, .. } => {
            qemu::check_accel()?;
            let (mut sys, path, artifacts) = build_image(&manifest, None, outside, uefi)?;
            host_side(&mut sys, &manifest, display == "vnc", false, &disks)?;
            // Ctrl-C and SIGTERM stop the machine (QEMU is in a process
            // group of its own, so only this process gets them).
            static STOP: AtomicBool = AtomicBool::new(false);
            ctrlc::set_handler(|| {
                STOP.store(true, Ordering::Release);
            })
            .context("installing the Ctrl-C handler")?;
            eprintln!(
                "hallows: booting {} ({} partition{}){}; Ctrl-C stops it",
                path.display(),
                sys.partitions.len(),
                if sys.partitions.len() == 1 { "" } else { "s" },
                timeout.map(|t| format!(", for at most {t} s")).unwrap_or_default()
            );
            let limit = timeout.map(Duration::from_secs);
            for f in &sys.forwards {
                eprintln!("hallows: forwarding 127.0.0.1:{} to {} port {}; waiting for it to answer", f.host, f.to, f.port);
                let (f, stop) = (f.clone(), &STOP);
                std::thread::spawn(move || {
                    if qemu::wait_for_answer(f.host, stop) {
                        eprintln!("hallows: {} port {} answers on 127.0.0.1:{}", f.to, f.port, f.host);
                    }
                });
            }
            progress(&format!(
                "starting QEMU ({}, board {}); the system's console follows",
                sys.board.qemu().map(|q| q.binary.as_str()).unwrap_or("qemu"),
                sys.board.name
            ));
            // The operator's commands, one per line on standard input:
            // `status`, `stop NAME`, `restart NAME` (docs/supervision.md).
            let control = std::sync::Arc::new(qemu::Control::default());
            let input = control.clone();
            let names: Vec<String> = sys.partitions.iter().map(|p| p.name.clone()).collect();
            std::thread::spawn(move || {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                for line in std::io::stdin().lines().map_while(Result::ok) {
                    if line.trim().is_empty() {
                        continue;
                    }
                    if let Err(e) = input.send(line.trim(), &names) {
                        eprintln!("hallows: {e}");
                    }
                }
            });
            let out = qemu::run_controlled(&sys, &path, limit, &STOP, false, &qemu_args, &[], Some(control))?;
            let frames = hallows::symbolize::backtraces(&out.output, &sys, &|g| artifacts.guest(g));
            if !frames.is_empty() {
                eprintln!("hallows: post-mortem backtraces, symbolized:");
                for f in frames {
                    eprintln!("hallows:   {f}");
                }
            }
            let code = match (out.ended, out.status) {
                (qemu::Ended::Exited, Some(code)) => {
                    if code == hallows::image_x86::NO_STATUS {
                        eprintln!(
                            "hallows: the machine stopped without the hypervisor's status line \
                             (`[hallows] machine exit status N`); treated as a failure"
                        );
                    }
                    return Ok(code.clamp(0, 255) as u8);
                }
                (qemu::Ended::TimedOut, _) => {
                    eprintln!("hallows: the system did not finish within {} s; stopped", timeout.unwrap_or(0));
                    124
                }
                _ => {
                    eprintln!("hallows: stopped on request (Ctrl-C or SIGTERM)");
                    130
                }
            };
            let names: Vec<&str> = sys.partitions.iter().map(|p| p.name.as_str()).collect();
            eprintln!("hallows: partitions when the machine was stopped:");
            for (name, state) in qemu::partition_states(&out.output, &names) {
                eprintln!("hallows:   {name}: {state}");
            }
            Ok(code)
        }
        Cmd::BenchCount { manifest, marks, timeout, until, profile } => {
            let (sys, path, _) = build_image(&manifest, None, outside, false)?;
            let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
            let plugin = hallows::benchcount::build_plugin(&root)?;
            let hv = hallows::cost::image_base(&sys);
            let len = std::fs::metadata(&path)?.len();
            let marks = std::path::absolute(&marks)?;
            ensure_plain_path(&marks)?;
            let mut args = format!("{},out={},hv={hv:#x}+{len:#x}", plugin.display(), marks.display());
            if let Some(seq) = profile {
                args.push_str(&format!(",profile={seq},pfile={}.profile", marks.display()));
            }
            // The tool's own instrument, passed as its own QEMU option:
            // `-plugin` stays refused in user arguments and board files.
            let own = ["-plugin".to_owned(), args];
            let control = std::sync::Arc::new(qemu::Control::default());
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let seen = std::sync::Arc::new(AtomicBool::new(false));
            if let Some(text) = until {
                let (c, s, seen) = (control.clone(), stop.clone(), seen.clone());
                std::thread::spawn(move || {
                    if c.wait_for(&text, Duration::from_secs(timeout)) {
                        seen.store(true, Ordering::Release);
                        s.store(true, Ordering::Release);
                    }
                });
            }
            let extra = ["-icount".to_owned(), "shift=0,sleep=off".to_owned()];
            let out = qemu::run_controlled(&sys, &path, Some(Duration::from_secs(timeout)), &stop, true, &extra, &own, Some(control));
            let out = out?;
            qemu::show(&out.output);
            if seen.load(Ordering::Acquire) {
                return Ok(0);
            }
            Ok(out.status.map_or(3, |s| s.clamp(0, 255) as u8))
        }
        Cmd::Serve { manifest, ready_timeout, disks } => {
            qemu::check_accel()?;
            let (mut sys, path, _) = build_image(&manifest, None, outside, false)?;
            let (qmp, vnc) = host_side(&mut sys, &manifest, true, true, &disks)?;
            static SIGNALLED: AtomicBool = AtomicBool::new(false);
            ctrlc::set_handler(|| SIGNALLED.store(true, Ordering::Release)).context("installing the Ctrl-C handler")?;
            for f in &sys.forwards {
                eprintln!("hallows: forwarding 127.0.0.1:{} to {} port {}", f.host, f.to, f.port);
            }
            progress(&format!(
                "starting QEMU ({}, board {}); the system's console follows",
                sys.board.qemu().map(|q| q.binary.as_str()).unwrap_or("qemu"),
                sys.board.name
            ));
            let opts = hallows::serve::Options { ready_timeout: Duration::from_secs(ready_timeout), qmp: &qmp, vnc, signalled: &SIGNALLED };
            hallows::serve::serve(&sys, &path, &opts)
        }
        Cmd::El2Cost { manifest, top, pcs } => {
            let (sys, path, artifacts) = build_image(&manifest, None, outside, false)?;
            let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
            let elf = root.join("target").join(build::targets(sys.board.arch).0).join("release/hallows-hv");
            let c = hallows::cost::el2_cost(&sys, &path, &elf, |g| artifacts.guest(g), top, Duration::from_secs(600))?;
            qemu::show(&c.outcome.output);
            print!("{}", c.report);
            if let Some(file) = pcs {
                std::fs::write(&file, &c.pcs).with_context(|| format!("writing {}", file.display()))?;
            }
            Ok(0)
        }
        Cmd::LinuxCost { manifest, partition, top } => {
            let (sys, path, artifacts) = build_image(&manifest, None, outside, false)?;
            let linux: Vec<&str> = sys.partitions.iter().filter(|p| p.linux.is_some()).map(|p| p.name.as_str()).collect();
            let name = match (partition, linux.as_slice()) {
                (Some(n), _) => n,
                (None, [one]) => (*one).to_owned(),
                (None, []) => anyhow::bail!("{}: no partition runs Linux (a `linux` key)", manifest.display()),
                (None, many) => anyhow::bail!("{}: several Linux partitions ({}): name one with --partition", manifest.display(), many.join(", ")),
            };
            let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
            let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
            let sock = root.join("target/hallows/qmp").join(format!("{stem}-cost.sock"));
            progress(&format!("booting untraced; tracing the hypervisor on {name}'s cores between its `{}` and `{}` lines", hallows::linuxcost::TRACE_ON, hallows::linuxcost::TRACE_OFF));
            let (out, cost) = hallows::linuxcost::measure(&sys, &path, &artifacts.hypervisor, &name, &sock, top, Duration::from_secs(900))?;
            qemu::show(&out.output);
            print!("{}", cost.report());
            cost.check()?;
            match (out.ended, out.status) {
                (qemu::Ended::Exited, Some(0)) => Ok(0),
                (qemu::Ended::Exited, Some(code)) => anyhow::bail!("the measured system ended with status {code}"),
                _ => anyhow::bail!("the measured system did not finish within 900 s"),
            }
        }
        Cmd::NetCost { manifest, requests, warm_up, connections, path, port, top, headers, prime, also } => {
            let headers = hallows::netcost::header_lines(&headers)?;
            let (sys, image_path, artifacts) = build_image(&manifest, None, outside, false)?;
            let fwd = match port {
                Some(p) => sys.forwards.iter().find(|f| f.host == p),
                None => sys.forwards.first(),
            }
            .context("the manifest has no such [[forward]]")?
            .clone();
            let len = std::fs::metadata(&image_path)?.len();
            let hv_base = sys.board.hypervisor.base + 0x20_0000;
            let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
            let mut partitions = Vec::new();
            let mut names = vec![fwd.nic_owner.clone()];
            if fwd.to != fwd.nic_owner {
                names.push(fwd.to.clone());
            }
            for a in also {
                if sys.partition(&a).is_none() {
                    anyhow::bail!("--also {a}: the manifest has no partition `{a}`");
                }
                if !names.contains(&a) {
                    names.push(a);
                }
            }
            for name in &names {
                let p = sys.partition(name).context("forwarded partition")?;
                let elf_path = root.join("target").join(build::targets(sys.board.arch).1).join("release").join(&p.guest);
                let elf = image::Elf::parse(&std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?)?;
                let text = elf
                    .segments
                    .iter()
                    .find(|s| (s.addr..s.addr + s.mem_size).contains(&elf.entry))
                    .map(|s| s.addr..s.addr + s.mem_size)
                    .context("the guest's entry point is in no segment")?;
                if text.end > hv_base && text.start < hv_base + len {
                    anyhow::bail!("guest `{}`'s code ({text:x?}) overlaps the hypervisor's addresses: the trace could not tell them apart", p.guest);
                }
                let symbols = hallows::cost::symbols_in(&elf, &text);
                partitions.push(hallows::netcost::Measured { name: name.clone(), cores: p.cores.iter().map(|&c| c as usize).collect(), text, symbols });
            }
            let hv_elf = image::Elf::parse(&std::fs::read(&artifacts.hypervisor).with_context(|| format!("reading {}", artifacts.hypervisor.display()))?)?;
            let code = hallows::trace::system_code(&sys, &hv_elf, |g| artifacts.guest(g));
            let t = hallows::netcost::Target { hv: hv_base..hv_base + len, partitions, host_port: fwd.host, path: &path, headers, prime, code };
            let (c, idle) = hallows::netcost::traced_run(&sys, &image_path, &t, warm_up, requests, connections)?;
            let per = |x: u64| x as f64 / requests as f64;
            println!(
                "per keep-alive request ({} on 127.0.0.1:{}, {requests} requests on {connections} connection(s), after {warm_up} each):",
                if path.starts_with('/') { format!("GET {path}") } else { path.clone() },
                fwd.host
            );
            println!("  hypervisor (EL2) on the serving partitions' cores: {:.1}", per(c.el2));
            println!("  hypervisor (EL2) on the other cores: {:.1}", per(c.el2_other));
            println!("  (an equally long window without requests: {:.1} and {:.1})", per(idle.el2), per(idle.el2_other));
            println!("  (trace: {}; without requests: {})", c.repeats, idle.repeats);
            for (i, m) in t.partitions.iter().enumerate() {
                let mode = sys
                    .partition(&m.name)
                    .and_then(|p| p.net.nic.as_ref())
                    .map(|n| if n.mode == vmm_config::NicMode::Poll { " (poll mode: includes idle polling)" } else { " (interrupt mode)" })
                    .unwrap_or(if m.name == fwd.to { " (behind the gateway)" } else { " (reached over channels)" });
                println!(
                    "  guest of `{}`{mode}: {:.0} (an equally long window without requests: {:.0})",
                    m.name,
                    per(c.guest[i].iter().sum()),
                    per(idle.guest[i].iter().sum())
                );
                for (k, part) in hallows::netcost::PARTS.iter().enumerate() {
                    if c.guest[i][k] > 0 {
                        println!("    {:>10.0}  {part}", per(c.guest[i][k]));
                    }
                }
                for (window, counts) in [("with requests", &c), ("without", &idle)] {
                    if top > 0 {
                        println!("  the {top} functions that ran the most, window {window}:");
                    }
                    for (f, n) in counts.functions[i].iter().take(top) {
                        println!("    {:>10.0}  {f}", per(*n));
                    }
                }
            }
            Ok(0)
        }
        Cmd::BootCost { manifest, uefi: true } => {
            let (sys, disk, artifacts) = build_image(&manifest, None, outside, true)?;
            let guest = image::Elf::parse(&std::fs::read(artifacts.guest(&sys.partitions[0].guest))?)?;
            // A first, untraced boot: the loader names its exit path (where
            // the firmware placed the loader); the traced boot that follows
            // loads it at the same place (same firmware, disk and memory).
            progress("booting once to find the loader's exit path");
            let first = qemu::run(&sys, &disk, Duration::from_secs(300), true, &[])?;
            let exit = first
                .output
                .lines()
                .find_map(|l| l.split_once("exiting boot services, then ").map(|(_, r)| r.trim().to_string()))
                .and_then(|r| {
                    let (a, b) = r.split_once("..")?;
                    let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
                    Some(hex(a)?..hex(b)?)
                })
                .with_context(|| format!("the loader did not name its exit path:\n{}", first.output))?;
            let hv_elf = image::Elf::parse(&std::fs::read(&artifacts.hypervisor)?)?;
            let hv_start = hv_elf.symbol("__hv_start").context("the hypervisor has no __hv_start")?;
            let hv = hv_start..sys.board.hypervisor.base + sys.board.hypervisor.size;
            progress(&format!("tracing a second boot from {:#x} (singlestep: slow)", exit.start));
            let code = hallows::trace::system_code(&sys, &hv_elf, |g| artifacts.guest(g));
            let (n, hv_part, repeats) = qemu::instructions_from_handoff(&sys, &disk, exit, hv, guest.entry, &code)?;
            println!(
                "{n} instructions from the UEFI loader's exit path (after ExitBootServices) to the first guest instruction; \
                 {} of them in the loader's exit path, {hv_part} in the hypervisor ({repeats})",
                n - hv_part
            );
            Ok(0)
        }
        Cmd::BootCost { manifest, uefi: false } => {
            let (sys, path, artifacts) = build_image(&manifest, None, outside, false)?;
            let img = std::fs::read(&path)?;
            let hv_base = sys.board.hypervisor.base;
            let entry = image::Elf::parse(&std::fs::read(
                workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?
                    .join("target")
                    .join(build::targets(sys.board.arch).1)
                    .join("release")
                    .join(&sys.partitions[0].guest),
            )?)?
            .entry;
            let hv_elf = image::Elf::parse(&std::fs::read(&artifacts.hypervisor)?)?;
            let code = hallows::trace::system_code(&sys, &hv_elf, |g| artifacts.guest(g));
            if sys.board.arch == vmm_config::Arch::X86_64 {
                // QEMU's -kernel on x86 runs SeaBIOS and its multiboot
                // loader first: count from the hypervisor's first
                // instruction (the part the UEFI boot's figure also
                // reports), tracing only the hypervisor (`-dfilter`).
                let hv_start = hv_elf.symbol("__hv_start").context("the hypervisor has no __hv_start")?;
                let hv = hv_start..hv_base + sys.board.hypervisor.size;
                let (n, _, repeats) = qemu::instructions_from_handoff(&sys, &path, hv.clone(), hv, entry, &code)?;
                println!("{n} instructions from the hypervisor's first instruction to the first guest instruction ({} bytes image; {repeats})", img.len());
                return Ok(0);
            }
            let (n, repeats) = qemu::instructions_to_guest(&sys, &path, hv_base + 0x20_0000, entry, &code)?;
            println!("{n} instructions from reset to the first guest instruction ({} bytes image; {repeats})", img.len());
            Ok(0)
        }
    }
}

/// What `check` and `inspect` check a manifest against: the guests of its
/// workspace, and the project directory its paths must stay in (the
/// workspace, else the manifest's own directory), unless `outside`.
fn context(manifest: &Path, outside: bool) -> vmm_config::CheckContext {
    let dir = manifest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let (mut ctx, root) = match workspace::root_from(dir) {
        Ok(root) => (workspace::check_context(&root), root),
        Err(_) => {
            // Nothing to resolve guest names against: say so, once (a
            // manifest that does not exist gets its own error).
            if dir.is_dir() {
                eprintln!(
                    "warning: {} is not inside a RustHallows workspace (a Cargo.toml with [workspace] above it): \
                     guest names are not checked against guests/, and `hallows build` will refuse it",
                    manifest.display()
                );
            }
            (vmm_config::CheckContext::default(), dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
        }
    };
    ctx.root = (!outside).then_some(root);
    ctx
}

/// The workspace root of `manifest` and its checked system (diagnostics
/// printed when it is not valid).
fn load_system(manifest: &Path, outside: bool) -> Result<(PathBuf, vmm_config::System)> {
    let root = workspace::root_from(manifest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    let mut ctx = workspace::check_context(&root);
    ctx.root = (!outside).then(|| root.clone());
    let sys = match vmm_config::load(manifest, &ctx) {
        Ok(sys) => sys,
        Err(diags) => {
            eprint!("{diags}");
            anyhow::bail!("{} is not a valid manifest", manifest.display());
        }
    };
    Ok((root, sys))
}

/// The host's side of a run: the display (on VNC with `vnc`) and QMP
/// socket of a system with a display, or QMP alone with `always_qmp`; the
/// `--disk PARTITION=FILE` overrides; each disk printed. Returns the QMP
/// socket and the VNC display number.
fn host_side(sys: &mut vmm_config::System, manifest: &Path, vnc: bool, always_qmp: bool, disks: &[String]) -> Result<(PathBuf, Option<u16>)> {
    let root = workspace::root_from(manifest.parent().unwrap_or(Path::new(".")))?;
    let sock = hallows::qmp::socket_for(&root, manifest);
    let mut shown = None;
    if let Some((name, d)) = sys.partitions.iter().find_map(|p| p.display.as_ref().map(|d| (p.name.clone(), d.clone()))) {
        if vnc {
            let n = hallows::qmp::free_vnc_display()?;
            sys.display_host.mode = vmm_config::DisplayMode::Vnc(n);
            shown = Some(n);
            eprintln!("hallows: display of {name} ({}x{}) on VNC 127.0.0.1:{} (vncviewer 127.0.0.1::{})", d.width, d.height, 5900 + n, 5900 + n);
        }
        eprintln!("hallows: QMP on {} (hallows screenshot {} FILE.png)", sock.display(), manifest.display());
        sys.display_host.qmp = Some(sock.clone());
    } else if always_qmp {
        eprintln!("hallows: QMP on {}", sock.display());
        sys.display_host.qmp = Some(sock.clone());
    }
    for d in disks {
        let Some((name, file)) = d.split_once('=') else {
            anyhow::bail!("--disk {d}: write it PARTITION=FILE");
        };
        let Some(disk) = sys.partitions.iter_mut().find(|p| p.name == name).and_then(|p| p.disk.as_mut()) else {
            anyhow::bail!("--disk {d}: the manifest gives no partition `{name}` a `disk`");
        };
        disk.path = PathBuf::from(file);
    }
    for p in &sys.partitions {
        if let Some(disk) = &p.disk {
            eprintln!("hallows: disk of {}: {} ({}, {})", p.name, disk.path.display(), vmm_config::format_size(disk.size), disk.device);
        }
    }
    Ok((sock, shown))
}

/// QMP of the running system of `manifest` (its display's size from the
/// manifest).
fn connect_display(manifest: &Path, outside: bool) -> Result<hallows::qmp::Qmp> {
    let (root, sys) = load_system(manifest, outside)?;
    let Some(d) = sys.partitions.iter().find_map(|p| p.display.as_ref()) else {
        anyhow::bail!("{}: no partition has a `display`", manifest.display());
    };
    hallows::qmp::Qmp::connect(&hallows::qmp::socket_for(&root, manifest), (d.width, d.height), Duration::from_secs(2))
}

/// Builds and composes the image; with `uefi`, also the EFI system
/// partition image, whose path is then the one returned.
/// A path QEMU's option parser takes whole (no `,`).
fn ensure_plain_path(p: &Path) -> Result<()> {
    if p.to_str().is_none_or(|s| s.contains(',')) {
        anyhow::bail!("{}: the path must be UTF-8 without commas (it goes into a QEMU option)", p.display());
    }
    Ok(())
}

fn build_image(manifest: &Path, output: Option<PathBuf>, outside: bool, uefi: bool) -> Result<(vmm_config::System, PathBuf, build::Artifacts)> {
    let (root, sys) = load_system(manifest, outside)?;
    // The same service-spec cross-check as `hallows check`: a system whose
    // two ends of a channel disagree is never built.
    let specs = match workspace::check_specs(Some(&root), &sys, manifest) {
        Ok(specs) => specs,
        Err(diags) => {
            eprint!("{diags}");
            anyhow::bail!("{}: its service specs do not match the manifest", manifest.display());
        }
    };
    let layout_hashes = parseltongue::manifest::layout_hashes(&sys, &specs);
    // `make run ARCH=x86_64 MANIFEST=...` passes ARCH as HALLOWS_ARCH: the
    // manifest's board decides the architecture, so a different ARCH is
    // refused rather than silently ignored.
    if let Some(arch) = std::env::var("HALLOWS_ARCH").ok().filter(|a| !a.is_empty()) {
        if arch != sys.board.arch.name() {
            anyhow::bail!(
                "ARCH={arch}, but {}'s board `{}` is {}: the manifest picks the architecture; \
                 drop ARCH=, or name a manifest whose board is {arch} (MANIFEST=...)",
                manifest.display(),
                sys.board.name,
                sys.board.arch.name()
            );
        }
    }
    // Linux partitions build nothing: their kernel is a file.
    let mut guests: Vec<String> = sys.partitions.iter().filter(|p| p.linux.is_none()).map(|p| p.guest.clone()).collect();
    guests.sort();
    guests.dedup();
    let artifacts = build::build(&root, sys.board.arch, &guests)?;
    progress(&format!("composing the image ({} partition{}, board {})", sys.partitions.len(), if sys.partitions.len() == 1 { "" } else { "s" }, sys.board.name));
    let hv = std::fs::read(&artifacts.hypervisor).context("reading the hypervisor binary")?;
    let img = image::compose_typed(&sys, &hv, &|name| {
        std::fs::read(artifacts.guest(name)).with_context(|| format!("reading guest `{name}`"))
    }, &layout_hashes)?;
    let path = output.unwrap_or_else(|| {
        let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
        root.join("target/hallows").join(format!("{stem}.img"))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &img.bytes).with_context(|| format!("writing {}", path.display()))?;
    if uefi {
        let loader = build::build_loader(&root, sys.board.arch)?;
        let loader = std::fs::read(&loader).with_context(|| format!("reading the EFI loader {}", loader.display()))?;
        let disk = hallows::uefi::disk_path(&path);
        progress(&format!("writing the EFI system partition image {}", disk.display()));
        hallows::uefi::write_disk(&disk, sys.board.arch, &loader, &hallows::uefi::image_file(&sys, &hv, &img.bytes)?)?;
        return Ok((sys, disk, artifacts));
    }
    Ok((sys, path, artifacts))
}
