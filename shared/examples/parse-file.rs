//! Times the file source's parser on a file: `cargo run --release -p causeway-shared --example parse-file FILE`.

fn main() {
    let path = std::env::args().nth(1).expect("usage: parse-file FILE");
    let text = std::fs::read_to_string(&path).expect("readable file");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (data, _) = causeway_shared::source::parse_objects(&text).expect("valid objects");
        println!(
            "{path}: {} bytes, {} services, parsed in {:?}",
            text.len(),
            data.services.len(),
            t.elapsed()
        );
    }
}
