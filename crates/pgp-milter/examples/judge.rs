//! Prints pgp-milter's verdict for each message file given (headers,
//! blank line, body, as a mail file holds it), one line each:
//! `cargo run -p pgp-milter --example judge -- FILE...`. For trying
//! constructs by hand next to a mail reader; the daemon reads the same way
//! (`detect`), without the envelope rules.
fn main() {
    for path in std::env::args().skip(1) {
        let raw = std::fs::read(&path).expect("read");
        println!("{path}\t{}", pgp_milter::detect(&raw));
    }
}
