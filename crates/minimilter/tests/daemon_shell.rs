//! The daemon shell's contract (tests/daemon_contract) on the example
//! milter; pgp-milter and mailman-milter run the same clauses.

mod daemon_contract;

use daemon_contract::Binary;

fn keyword_milter() -> Binary {
    // <target>/<profile>/deps/<this test> -> <target>/<profile>/examples/
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/keyword_milter");
    assert!(
        path.exists(),
        "{} missing: `cargo test` builds the examples",
        path.display()
    );
    Binary {
        name: "keyword_milter",
        path,
        base: Vec::new(),
    }
}

daemon_contract_tests!(keyword_milter());
