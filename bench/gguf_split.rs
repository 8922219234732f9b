//! `gguf_split MODEL.gguf PARTS OUT_DIR PREFIX`: writes the model as PARTS files named
//! `PREFIX-0000i-of-0000n.gguf`, as llama.cpp's gguf-split does (bench/import.sh imports them).

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, parts, out, prefix] = args.as_slice() else {
        eprintln!("usage: gguf_split MODEL.gguf PARTS OUT_DIR PREFIX");
        std::process::exit(2);
    };
    let model = PathBuf::from(model);
    let info = airlock::gguf::read_file(&model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let parts: u32 = parts.parse().expect("PARTS is a number");
    for p in airlock::gguf::split::write_split(&model, &info, parts, &PathBuf::from(out), prefix).expect("write the parts") {
        println!("{}", p.display());
    }
}
