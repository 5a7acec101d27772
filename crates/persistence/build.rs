//! `embed_migrations!` reads the migration directories at compile time but
//! does not tell Cargo about them, so a new or edited migration would not
//! trigger a rebuild without this.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
