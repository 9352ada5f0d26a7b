//! Runs the manifest subcommands without the `hallows` tool:
//! `cargo run -p vmm-config --example manifest -- check|inspect|schema [FILE] [GUEST...]`.
//! With guest names after FILE, guests are checked against them.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ctx = vmm_config::CheckContext {
        guests: (args.len() > 2).then(|| args[2..].to_vec()),
        root: None,
    };
    let code = match (args.first().map(String::as_str), args.get(1)) {
        (Some("check"), Some(f)) => vmm_config::cli::check(Path::new(f), &ctx),
        (Some("inspect"), Some(f)) => vmm_config::cli::inspect(Path::new(f), &ctx),
        (Some("schema"), _) => {
            println!("{}", vmm_config::cli::schema());
            0
        }
        _ => {
            eprintln!("usage: manifest check|inspect FILE [GUEST...] | manifest schema");
            2
        }
    };
    std::process::exit(code);
}
