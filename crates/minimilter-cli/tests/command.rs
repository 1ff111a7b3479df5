//! The whole command line is public (for manual pages and completions),
//! valid by clap's own checks, with every command.

#[test]
fn the_whole_command_line_is_public() {
    let c = minimilter_cli::command();
    c.clone().debug_assert();
    assert_eq!(c.get_name(), "minimilter");
    let names: Vec<&str> = c.get_subcommands().map(|s| s.get_name()).collect();
    for name in ["check", "bench", "record", "replay"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}
