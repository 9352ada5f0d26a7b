//! `docs/schedulers.md` takes its figures from the simulator: every section
//! the runner renders has its markers in the doc, the doc has no other
//! generated section, each was filled by a run, and that run used at least
//! ten seeds.
use hallows_sim::report::{splice, SECTIONS};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schedulers.md");
    std::fs::read_to_string(path).expect("docs/schedulers.md")
}

/// The body of section `name`.
fn section<'a>(doc: &'a str, name: &str) -> &'a str {
    let open = format!("<!-- sim:{name} -->");
    let close = format!("<!-- /sim:{name} -->");
    let start = doc.find(&open).expect("opening marker") + open.len();
    let end = doc[start..].find(&close).expect("closing marker") + start;
    &doc[start..end]
}

#[test]
fn every_generated_section_is_marked_and_filled() {
    let doc = doc();
    let sections: Vec<(String, String)> = SECTIONS
        .iter()
        .map(|n| (n.to_string(), format!("[{n}]")))
        .collect();
    // Splicing succeeds only if the doc's markers are exactly SECTIONS.
    let spliced = splice(&doc, &sections).expect("the doc's markers match the runner's sections");
    for name in SECTIONS {
        assert_eq!(section(&spliced, name).trim(), format!("[{name}]"));
        assert!(
            !section(&doc, name).trim().is_empty(),
            "section {name} was never generated (run `make sim`)"
        );
    }
}

#[test]
fn the_figures_are_over_ten_seeds_or_more() {
    let doc = doc();
    let setup = section(&doc, "setup");
    let runs: u64 = setup
        .split("over ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the setup section says how many runs");
    assert!(runs >= 10, "the doc's figures are over {runs} seeds");
    // Every figure over the seeds carries its range, or is one value for all.
    let tails = section(&doc, "api-bimodal-tails");
    assert!(tails.contains('–'), "no spread in the tails table");
}
