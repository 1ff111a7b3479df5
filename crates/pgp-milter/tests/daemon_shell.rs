//! The daemon shell's contract, the same clauses as for every minimilter
//! daemon (crates/minimilter/tests/daemon_contract).

#[path = "../../minimilter/tests/daemon_contract/mod.rs"]
mod daemon_contract;

use daemon_contract::Binary;

fn pgp_milter() -> Binary {
    Binary {
        name: "pgp-milter",
        path: env!("CARGO_BIN_EXE_pgp-milter").into(),
        base: Vec::new(),
    }
}

daemon_contract_tests!(pgp_milter());

#[test]
#[ignore = "needs systemd-analyze"]
fn systemd_unit() {
    let port = daemon_contract::free_port();
    daemon_contract::systemd_unit(
        &pgp_milter(),
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dist/pgp-milter.service"
        )),
        &format!("[server]\nlisten = \"inet:127.0.0.1:{port}\"\n"),
    );
}
