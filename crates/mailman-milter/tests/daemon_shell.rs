//! The daemon shell's contract, the same clauses as for every minimilter
//! daemon (crates/minimilter/tests/daemon_contract).

#[path = "../../minimilter/tests/daemon_contract/mod.rs"]
mod daemon_contract;

use std::path::PathBuf;
use std::sync::OnceLock;

use daemon_contract::Binary;

/// One lists file for every test of this binary (it only needs to load).
fn lists_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mm-contract-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lists.toml");
        std::fs::write(
            &file,
            "[[list]]\naddress = \"team@lists.example.org\"\nnonmember_action = \"reject\"\n\
             members = [\"alice@example.org\"]\n",
        )
        .unwrap();
        file
    })
    .clone()
}

fn mailman_milter() -> Binary {
    Binary {
        name: "mailman-milter",
        path: env!("CARGO_BIN_EXE_mailman-milter").into(),
        base: vec!["--lists".into(), lists_file().display().to_string()],
    }
}

daemon_contract_tests!(mailman_milter());

#[test]
#[ignore = "needs systemd-analyze"]
fn systemd_unit() {
    let port = daemon_contract::free_port();
    daemon_contract::systemd_unit(
        &Binary {
            base: Vec::new(),
            ..mailman_milter()
        },
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dist/mailman-milter.service"
        )),
        &format!(
            "lists = \"{}\"\n[server]\nlisten = \"inet:127.0.0.1:{port}\"\n",
            lists_file().display()
        ),
    );
}
