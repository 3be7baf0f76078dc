//! Writes usher(1) to stdout: `cargo run --example manpage > docs/usher.1`.

fn main() {
    print!("{}", usher::manpage::render());
}
