//! `just bench-core`: prints lock core throughput and recovery time figures.
fn main() {
    println!("bench-core: not implemented yet");
}
