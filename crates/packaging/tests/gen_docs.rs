//! `gen-docs` writes a page for every page its pages refer to: a main
//! page's SUBCOMMANDS section names `NAME-SUB(N)` pages, and each must be
//! among the files written (`man minimilter` listed a `minimilter-help(1)`
//! that no package installs).

use std::process::Command;

#[test]
fn every_subcommand_page_a_main_page_lists_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_gen-docs"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let man = dir.path().join("man");
    let pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut listed = 0;
    for page in &pages {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        let Some(at) = text.find(".SH SUBCOMMANDS") else {
            continue;
        };
        let section = text[at..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"));
        // `.TP` then the reference on its own line: `minimilter\-check(1)`.
        for reference in section.filter(|l| l.ends_with(')') && !l.contains(' ')) {
            let (name, rest) = reference.split_once('(').unwrap();
            let file = format!(
                "{}.{}",
                name.replace("\\-", "-"),
                rest.trim_end_matches(')')
            );
            assert!(
                pages.contains(&file),
                "{page} lists {reference}: no {file} in {pages:?}"
            );
            listed += 1;
        }
    }
    // minimilter's four and mailman-milter's export.
    assert_eq!(listed, 5, "{pages:?}");
}
