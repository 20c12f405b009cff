//! Times the file source's parser on a file:
//! `cargo run --release -p causeway-shared --example parse-file FILE`.
//! Prints a cold parse, and a re-parse after one appended Service (what the file source
//! does when the file changes).

use std::time::Instant;

use causeway_shared::source::ObjectCache;

fn main() {
    let path = std::env::args().nth(1).expect("usage: parse-file FILE");
    let text = std::fs::read_to_string(&path).expect("readable file");
    for round in 0..3 {
        let mut cache = ObjectCache::default();
        let t = Instant::now();
        let (data, _) = cache.parse(&text).expect("valid objects");
        let cold = t.elapsed();
        let changed = format!(
            "{text}---\napiVersion: v1\nkind: Service\nmetadata: {{name: probe-{round}, namespace: bench}}\nspec: {{clusterIP: None}}\n"
        );
        let t = Instant::now();
        let (again, _) = cache.parse(&changed).expect("valid objects");
        let warm = t.elapsed();
        assert_eq!(again.services.len(), data.services.len() + 1);
        println!(
            "{path}: {} bytes, {} services: cold parse {cold:?}, re-parse after one change {warm:?}",
            text.len(),
            data.services.len(),
        );
    }
}
